"""The ``optuna-energy`` command."""

from __future__ import annotations

import argparse
import logging
import os
import sys
import warnings
from collections.abc import Callable, Sequence

import optuna

from optuna_energy.analysis import format_table, pareto_trials
from optuna_energy.config import OBJECTIVES, SAMPLERS, ConfigError, StudyConfig, load_config
from optuna_energy.data import DatasetError
from optuna_energy.energy import EnergyMeterError
from optuna_energy.storage import StorageError, mask_url
from optuna_energy.study import create_or_load_study, run_study
from optuna_energy.workers import (STORAGE_ENV, count_gpus, launch, plan_workers, run_worker,
                                   sigterm_as_interrupt)

PROG = "optuna-energy"
_USER_ERRORS = (ConfigError, DatasetError, StorageError, EnergyMeterError)


def _positive(kind: Callable[[str], float]) -> Callable[[str], float]:
    def parse(text: str) -> float:
        try:
            value = kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected a positive {kind.__name__}, got {text!r}") from None
        if value <= 0:
            raise argparse.ArgumentTypeError(f"expected a positive {kind.__name__}, got {text!r}")
        return value

    parse.__name__ = kind.__name__
    return parse


def add_study_options(parser: argparse.ArgumentParser) -> None:
    """Options shared by every command that runs trials; each overrides the config's [study]."""
    parser.add_argument("config", nargs="?", help="study TOML (default: the embedded digits study)")
    parser.add_argument("--storage", help="sqlite:///optuna_energy.db, postgresql://user@host/db, "
                        f"mysql://..., journal:///file.log (default: ${STORAGE_ENV}, then the config)")
    parser.add_argument("--study-name", help="study to create or resume")
    parser.add_argument("--n-trials", type=_positive(int), help="total trials the study should reach")
    parser.add_argument("--timeout", type=_positive(float), help="stop starting trials after this many seconds")
    parser.add_argument("--device", help="auto, cpu, cuda or cuda:N")
    parser.add_argument("--seed", type=int, help="seed for the sampler and each trial")
    parser.add_argument("--sampler", choices=SAMPLERS, help="search strategy")
    parser.add_argument("--objectives", help=f"comma-separated, at least two of: {', '.join(OBJECTIVES)}")


def study_overrides(args: argparse.Namespace) -> dict:
    objectives = tuple(name.strip() for name in args.objectives.split(",")) if args.objectives else None
    return {"storage": args.storage or os.environ.get(STORAGE_ENV), "study_name": args.study_name, "n_trials": args.n_trials,
            "timeout": args.timeout, "device": args.device, "seed": args.seed,
            "sampler": args.sampler, "objectives": objectives}


def _run(args: argparse.Namespace) -> int:
    optuna.logging.set_verbosity(optuna.logging.WARNING)  # the progress bar says it better
    study = run_study(args.config, **study_overrides(args))
    front = pareto_trials(study)
    print(f"\nPareto front of study {study.study_name!r} ({len(front)} of {len(study.trials)} trials):")
    print(format_table(study, front))
    return 0


def _config(args: argparse.Namespace) -> StudyConfig:
    overrides = study_overrides(args)
    overrides["name"] = overrides.pop("study_name")
    return load_config(args.config).with_study(**overrides)


def _worker(args: argparse.Namespace) -> int:
    optuna.logging.set_verbosity(optuna.logging.WARNING)  # one line per trial says it better
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    with sigterm_as_interrupt():
        run_worker(_config(args))
    return 0


def _launch(args: argparse.Namespace) -> int:
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    config = _config(args)
    try:
        slots = plan_workers(args.gpus, workers_per_gpu=args.workers_per_gpu,
                             cpu_workers=args.workers, available_gpus=count_gpus())
    except ValueError as error:
        raise ConfigError(str(error)) from None
    create_or_load_study(config)  # once here: bad URLs and passwords fail once, not per worker
    forwarded = [args.config] if args.config else []
    for flag, value in (("--study-name", config.study.name), ("--n-trials", args.n_trials),
                        ("--timeout", args.timeout), ("--seed", args.seed),
                        ("--sampler", args.sampler), ("--objectives", args.objectives)):
        if value is not None:
            forwarded += [flag, str(value)]
    return launch(slots, forwarded, storage=config.study.storage)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog=PROG,
        description="Energy-aware multi-objective neural architecture search on Optuna. "
                    "Searches a 32-slot CNN space for models that are accurate and cheap "
                    "(inference time, parameters, energy per inference).",
        epilog=f"Start with: {PROG} run   (the embedded digits study, stored in ./optuna_energy.db)",
    )
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    run = commands.add_parser("run", help="run or resume a study and print its Pareto front",
                              description="Run or resume a study, then print its Pareto front.")
    add_study_options(run)
    run.set_defaults(handler=_run)

    worker = commands.add_parser(
        "worker", help="run trials of a shared study until the study has its budget",
        description="Join (or create) a study and run trials until the study as a whole has "
                    "n_trials finished ones. Start as many as you like, on any machines, "
                    "against one PostgreSQL/MySQL database or journal file.")
    add_study_options(worker)
    worker.set_defaults(handler=_worker)

    launcher = commands.add_parser(
        "launch", help="start one worker per GPU of this node and stream their logs",
        description="Start workers on this node, one per GPU (CUDA_VISIBLE_DEVICES set for "
                    "each) or, without a GPU, --workers CPU workers. Ctrl-C or SIGTERM stops "
                    "them; their running trials are queued again.")
    add_study_options(launcher)
    launcher.add_argument("--gpus", help="'all' or GPU indices like 0,1,2 (default: all GPUs, "
                          "or CPU workers when there is none)")
    launcher.add_argument("--workers-per-gpu", type=_positive(int), default=1,
                          help="workers sharing each GPU (default 1)")
    launcher.add_argument("--workers", type=_positive(int), default=1,
                          help="CPU workers when this node has no GPU (default 1)")
    launcher.set_defaults(handler=_launch)
    return parser


def _one_line_warning(message, category, filename, lineno, line=None) -> str:
    return f"{PROG}: warning: {message}\n"


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    warnings.formatwarning = _one_line_warning
    try:
        return args.handler(args)
    except _USER_ERRORS as error:
        print(f"{PROG}: error: {mask_url(str(error))}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"\n{PROG}: interrupted; finished trials are stored, run the same command to resume",
              file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
