"""A callback for the resume test: once epoch `after_epoch` is over and its checkpoint written (Lightning runs
checkpoint callbacks last, so this happens at the start of the next epoch), a fit that did not resume from a
checkpoint kills itself with SIGKILL (no cleanup, no atexit, as a crash or an out-of-memory kill). The resumed
fit, started from the killed run's saved config, carries the callback too and runs to the end."""
from __future__ import annotations

import os
import signal

import lightning as L


class KillAfterEpoch(L.Callback):
    def __init__(self, after_epoch: int) -> None:
        self.after_epoch = after_epoch

    def on_train_epoch_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if trainer.ckpt_path is None and trainer.current_epoch == self.after_epoch + 1:
            os.kill(os.getpid(), signal.SIGKILL)
