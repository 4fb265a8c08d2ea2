"""The ``optuna-energy`` command."""

from __future__ import annotations

import argparse
import sys
import warnings
from collections.abc import Callable, Sequence

import optuna

from optuna_energy.analysis import format_table, pareto_trials
from optuna_energy.config import OBJECTIVES, SAMPLERS, ConfigError
from optuna_energy.data import DatasetError
from optuna_energy.energy import EnergyMeterError
from optuna_energy.storage import StorageError, mask_url
from optuna_energy.study import run_study

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
    parser.add_argument("--storage", help="RDB URL, e.g. sqlite:///optuna_energy.db or postgresql://user@host/db")
    parser.add_argument("--study-name", help="study to create or resume")
    parser.add_argument("--n-trials", type=_positive(int), help="total trials the study should reach")
    parser.add_argument("--timeout", type=_positive(float), help="stop starting trials after this many seconds")
    parser.add_argument("--device", help="auto, cpu, cuda or cuda:N")
    parser.add_argument("--seed", type=int, help="seed for the sampler and each trial")
    parser.add_argument("--sampler", choices=SAMPLERS, help="search strategy")
    parser.add_argument("--objectives", help=f"comma-separated, at least two of: {', '.join(OBJECTIVES)}")


def study_overrides(args: argparse.Namespace) -> dict:
    objectives = tuple(name.strip() for name in args.objectives.split(",")) if args.objectives else None
    return {"storage": args.storage, "study_name": args.study_name, "n_trials": args.n_trials,
            "timeout": args.timeout, "device": args.device, "seed": args.seed,
            "sampler": args.sampler, "objectives": objectives}


def _run(args: argparse.Namespace) -> int:
    optuna.logging.set_verbosity(optuna.logging.WARNING)  # the progress bar says it better
    study = run_study(args.config, **study_overrides(args))
    front = pareto_trials(study)
    print(f"\nPareto front of study {study.study_name!r} ({len(front)} of {len(study.trials)} trials):")
    print(format_table(study, front))
    return 0


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
