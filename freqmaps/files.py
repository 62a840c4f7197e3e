"""Files that are either whole or absent: a writer writes to `<name>.partial` beside the target, which is
renamed onto the target only once the writer returns, so a killed or failing write never leaves a truncated
file under the final name."""
from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path


def write_atomically(path: str | Path, write: Callable[[Path], object]) -> Path:
    """Call write(temporary path), then rename the temporary file onto `path` (os.replace: atomic on one file
    system). On any error the temporary file is removed and the target is left as it was. Returns `path`."""
    path = Path(path)
    partial = path.with_name(path.name + ".partial")
    try:
        write(partial)
        os.replace(partial, path)
    finally:
        partial.unlink(missing_ok=True)
    return path
