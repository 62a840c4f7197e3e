"""The related studies' `analyze.py` entries, one module per study (`python analyze.py <study> --config ...`).

Each entry is a function whose arguments are its command line (jsonargparse reads the signature and docstring):
it loads the checkpoint and a seeded draw of the data (`studies.common`), calls the science in `freqmaps`, which
returns a result dataclass, then writes results.json / results.md / figures and an offline W&B run. The paper's
own study (`maps`) is `analyze.analyze`.
"""
