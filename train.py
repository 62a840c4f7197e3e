"""LightningCLI entry point: `python train.py fit|validate|test --config configs/<name>.yaml [--config ...]`.

configs/default.yaml (the main job) is every command's default config: the `--config` files apply on top of it
in order, each overriding what it sets. `num_classes`, `in_channels` and `image_size` flow from the datamodule
into the model; configs may interpolate (`${data.image_size}`) because the parser runs in omegaconf mode. After
`fit` the best checkpoint is tested (`--test_after_fit false` turns that off).
"""
from __future__ import annotations

import sys
from pathlib import Path

import yaml
from jsonargparse import set_parsing_settings
from lightning.pytorch import LightningDataModule, LightningModule, Trainer
from lightning.pytorch.cli import LightningArgumentParser, LightningCLI, SaveConfigCallback

from freqmaps.errors import exit_on_user_error
from freqmaps.zoo import read_checkpoint

DEFAULT_CONFIG = Path(__file__).resolve().parent / "configs" / "default.yaml"


class LoggerSaveConfigCallback(SaveConfigCallback):
    """Besides config.yaml in the log folder, the resolved config goes to every logger (W&B: the run's config)."""

    def save_config(self, trainer: Trainer, pl_module: LightningModule, stage: str) -> None:
        config = yaml.safe_load(self.parser.dump(self.config, skip_none=False))
        for logger in trainer.loggers:
            logger.log_hyperparams({"config": config})


class FreqmapsCLI(LightningCLI):
    def add_arguments_to_parser(self, parser: LightningArgumentParser) -> None:
        for name in ("num_classes", "in_channels", "image_size"):
            parser.link_arguments(f"data.{name}", f"model.init_args.{name}", apply_on="instantiate")
        parser.add_argument("--test_after_fit", type=bool, default=True, help="test the best checkpoint after fit")

    def after_fit(self) -> None:
        if not self.config.fit.test_after_fit or self.trainer.interrupted:
            return
        checkpoint = self.trainer.checkpoint_callback
        best = checkpoint.best_model_path if checkpoint is not None and not self.trainer.fast_dev_run else ""
        self.trainer.test(self.model, datamodule=self.datamodule, ckpt_path=best or None)


def check_ckpt_path(args: list[str]) -> None:
    """A `--ckpt_path` file on the command line must exist and read weights-only as a train.py checkpoint: a
    one-line error otherwise, before LightningCLI reads its hyper-parameters (its own special values pass)."""
    for i, arg in enumerate(args):
        value = arg.split("=", 1)[1] if arg.startswith("--ckpt_path=") else (
            args[i + 1] if arg == "--ckpt_path" and i + 1 < len(args) else None)
        if value and value not in ("last", "best", "hpc", "registry", "null"):
            read_checkpoint(value)


def main(args: list[str] | None = None) -> FreqmapsCLI:
    check_ckpt_path(sys.argv[1:] if args is None else args)
    # omegaconf+: `${trainer.max_epochs}` in a config is resolved after command-line overrides are applied,
    # relative to the config's own root (not the subcommand's namespace)
    set_parsing_settings(omegaconf_absolute_to_relative_paths=True)
    return FreqmapsCLI(
        LightningModule,
        LightningDataModule,
        subclass_mode_model=True,
        subclass_mode_data=True,
        save_config_callback=LoggerSaveConfigCallback,
        save_config_kwargs={"overwrite": True},
        parser_kwargs={"parser_mode": "omegaconf+", **{
            command: {"default_config_files": [str(DEFAULT_CONFIG)]} for command in LightningCLI.subcommands()
        }},
        args=args,
    )


if __name__ == "__main__":
    exit_on_user_error(main)
