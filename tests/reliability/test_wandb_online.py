"""W&B online without a reachable server: train.py ends with one `error:` line that names the failure and offers
offline logging, instead of a CommError traceback (the server address points at a closed local port, W&B's
start-up timeout is cut to 2 s, HOME is empty, so no saved login or settings apply)."""
from __future__ import annotations

import os
import subprocess
import sys

import pytest

from tests.train_configs import REPO


@pytest.mark.slow
def test_an_unreachable_server_gives_one_line_offering_offline(tmp_path):
    env = {k: v for k, v in os.environ.items() if not k.startswith("WANDB_")}
    env |= {"HOME": str(tmp_path), "WANDB_API_KEY": "a" * 40, "WANDB_BASE_URL": "http://127.0.0.1:9",
            "WANDB_INIT_TIMEOUT": "2", "PYTHONPATH": str(REPO)}
    result = subprocess.run([sys.executable, str(REPO / "train.py"), "fit", "--trainer.logger.init_args.offline",
                             "false", "--trainer.default_root_dir", str(tmp_path / "outputs")], cwd=tmp_path, env=env,
                            capture_output=True, text=True, timeout=300)
    assert result.returncode == 1
    assert "Traceback" not in result.stderr
    (line,) = [line for line in result.stderr.splitlines() if line.startswith("error:")]
    assert line.startswith("error: W&B could not start the run (") and "127.0.0.1:9" in line
    assert "--trainer.logger.init_args.offline true" in line
