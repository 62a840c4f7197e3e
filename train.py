"""LightningCLI entry point: `python train.py fit|validate|test --config configs/<name>.yaml [--config ...]`.

configs/default.yaml (the main job) is every command's default config: the `--config` files apply on top of it
in order, each overriding what it sets. `num_classes`, `in_channels` and `image_size` flow from the datamodule
into the model; configs may interpolate (`${data.image_size}`) because the parser runs in omegaconf mode. After
`fit` the best checkpoint is tested (`--test_after_fit false` turns that off).

Every fit has a run folder, `<logger save_dir>/<logger name>/<version>` (default job: `outputs/freqmaps/<W&B run
id>`), holding `checkpoints/` and the run's resolved `config.yaml`. `python train.py fit --resume RUN_FOLDER
[overrides]` goes on from its `checkpoints/last.ckpt` with its config (overrides apply on top), in the same run
folder and, with W&B, the same run id.
"""
from __future__ import annotations

import sys
from pathlib import Path

import yaml
from jsonargparse import set_parsing_settings
from lightning.pytorch import LightningDataModule, LightningModule, Trainer
from lightning.pytorch.cli import LightningArgumentParser, LightningCLI, SaveConfigCallback

from freqmaps.errors import UserInputError, exit_on_user_error
from freqmaps.files import check_writable, write_atomically
from freqmaps.zoo import read_checkpoint

DEFAULT_CONFIG = Path(__file__).resolve().parent / "configs" / "default.yaml"
CONFIG_NAME = "config.yaml"  # a run folder's resolved config


class LoggerSaveConfigCallback(SaveConfigCallback):
    """The resolved config goes to every logger (W&B: the run's config) and, once training starts, to the run
    folder (the checkpoint folder's parent) as config.yaml, for `--resume`."""

    def save_config(self, trainer: Trainer, pl_module: LightningModule, stage: str) -> None:
        config = yaml.safe_load(self.parser.dump(self.config, skip_none=False))
        for logger in trainer.loggers:
            logger.log_hyperparams({"config": config})

    def on_train_start(self, trainer: Trainer, pl_module: LightningModule) -> None:
        checkpoint = trainer.checkpoint_callback
        if trainer.is_global_zero and checkpoint is not None and checkpoint.dirpath:
            folder = Path(checkpoint.dirpath).parent
            folder.mkdir(parents=True, exist_ok=True)
            write_atomically(folder / CONFIG_NAME, lambda path: self.parser.save(
                self.config, str(path), skip_none=False, overwrite=True, multifile=False))


class FreqmapsCLI(LightningCLI):
    def add_arguments_to_parser(self, parser: LightningArgumentParser) -> None:
        for name in ("num_classes", "in_channels", "image_size"):
            parser.link_arguments(f"data.{name}", f"model.init_args.{name}", apply_on="instantiate")
        parser.add_argument("--test_after_fit", type=bool, default=True, help="test the best checkpoint after fit")

    def before_instantiate_classes(self) -> None:
        """The folders outputs go to must be writable before anything is built or trained: one-line errors. A
        logger's save_dir becomes absolute: W&B writes a run's log from its service process, which resolves a
        relative folder against its own working directory (the one it started in, which need not be ours)."""
        trainer = (self.config[self.subcommand] if self.subcommand else self.config).trainer
        folders = {"trainer.default_root_dir": trainer.default_root_dir}
        loggers = trainer.logger if isinstance(trainer.logger, list) else [trainer.logger]
        for logger in loggers:
            init_args = getattr(logger, "init_args", None)
            if getattr(init_args, "save_dir", None):
                init_args.save_dir = str(Path(init_args.save_dir).expanduser().resolve())
                folders["trainer.logger.init_args.save_dir"] = init_args.save_dir
        for option, folder in folders.items():
            if folder:
                check_writable(folder, option)

    def after_fit(self) -> None:
        if not self.config.fit.test_after_fit or self.trainer.interrupted:
            return
        checkpoint = self.trainer.checkpoint_callback
        best = checkpoint.best_model_path if checkpoint is not None and not self.trainer.fast_dev_run else ""
        self.trainer.test(self.model, datamodule=self.datamodule, ckpt_path=best or None)


def flag_values(args: list[str], flag: str) -> tuple[list[str], list[str]]:
    """The values given to `flag` (as `--flag value` or `--flag=value`; "" for a last `--flag` without one), in
    order, and the arguments without it."""
    values, rest, i = [], [], 0
    while i < len(args):
        if args[i].startswith(f"{flag}="):
            values.append(args[i].split("=", 1)[1])
        elif args[i] == flag:
            values.append(args[i + 1] if i + 1 < len(args) else "")
            i += 1
        else:
            rest.append(args[i])
        i += 1
    return values, rest


def check_ckpt_path(args: list[str]) -> None:
    """A `--ckpt_path` file on the command line must exist and read weights-only as a train.py checkpoint: a
    one-line error otherwise, before LightningCLI reads its hyper-parameters (its own special values pass)."""
    for value in flag_values(args, "--ckpt_path")[0]:
        if value and value not in ("last", "best", "hpc", "registry", "null"):
            read_checkpoint(value)


def resume_args(args: list[str]) -> list[str]:
    """`fit --resume RUN_FOLDER ...` as LightningCLI arguments: the run's config.yaml first, then the other
    arguments, then the run's version (the logger's `version`: W&B run id, CSV / TensorBoard version folder) and
    its last.ckpt. `--ckpt_path last` alone is refused: a new fit opens a new run folder, where no last.ckpt is."""
    folders, rest = flag_values(args, "--resume")
    checkpoints = flag_values(args, "--ckpt_path")[0]
    if not folders:
        if "last" in checkpoints:
            raise UserInputError("--ckpt_path last would look in a new run folder and train from scratch; resume "
                                 "a run with --resume <run folder> (e.g. outputs/freqmaps/<W&B run id>)")
        return args
    if not rest or rest[0] != "fit":
        raise UserInputError("--resume goes with `train.py fit`: python train.py fit --resume <run folder>")
    if checkpoints:
        raise UserInputError("--resume resumes from the run folder's checkpoints/last.ckpt; drop --ckpt_path")
    folder = folders[-1]
    run = Path(folder)
    last, config = run / "checkpoints" / "last.ckpt", run / CONFIG_NAME
    for path, what in ((last, "the last checkpoint"), (config, "the run's config")):
        if not path.is_file():
            raise UserInputError(f"--resume {folder}: no {path} ({what}); a run folder is where `train.py fit` "
                                 "put checkpoints/ (default: outputs/freqmaps/<W&B run id>)")
    return [rest[0], "--config", str(config), *rest[1:], "--trainer.logger.init_args.version", run.name,
            "--ckpt_path", str(last)]


def main(args: list[str] | None = None) -> FreqmapsCLI:
    """Run the CLI on `args` (None: the command line, which `--resume` rewrites in sys.argv, so that DDP's
    child processes, started from sys.argv, run the same command)."""
    if args is None:
        sys.argv[1:] = resume_args(sys.argv[1:])
    else:
        args = resume_args(args)
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
        save_config_kwargs={"save_to_log_dir": False},  # the run folder gets it (LoggerSaveConfigCallback)
        parser_kwargs={"parser_mode": "omegaconf+", **{
            command: {"default_config_files": [str(DEFAULT_CONFIG)]} for command in LightningCLI.subcommands()
        }},
        args=args,
    )


def wandb_failure(error: BaseException | None) -> str | None:
    """What to do, when `error` (or what caused it) is W&B failing to start an online run (no API key, no
    network): the user's to fix, so a one-line error offering offline logging instead of a traceback."""
    while error is not None and not type(error).__module__.startswith("wandb.errors"):
        error = error.__cause__ or error.__context__
    if error is None:
        return None
    reason = (str(error).strip().splitlines() or [type(error).__name__])[0][:200]
    return (f"W&B could not start the run ({reason}); log offline with --trainer.logger.init_args.offline true "
            "(upload later with `wandb sync <save_dir>/wandb/offline-run-*`), or run `wandb login` and check the "
            "network")


def run() -> None:
    """main() on the command line; a W&B start-up failure becomes a UserInputError (`wandb_failure`)."""
    try:
        main()
    except Exception as error:
        hint = wandb_failure(error)
        if hint is None:
            raise
        raise UserInputError(hint) from error


if __name__ == "__main__":
    exit_on_user_error(run)
