"""The ``optuna-energy`` command."""

from __future__ import annotations

import argparse
import contextlib
import logging
import os
import shlex
import sys
import textwrap
import warnings
from collections.abc import Callable, Sequence

import optuna

from optuna_energy.choices import DEFAULT_EXPORT_FORMAT
from optuna_energy.cli_parser import PROG, build_parser
from optuna_energy.config import ConfigError, StudyConfig, load_config
from optuna_energy.data import DatasetError
from optuna_energy.export import ExportError
from optuna_energy.host.devices import BACKENDS, DeviceError
from optuna_energy.host.files import OutputError
from optuna_energy.host.interrupts import exit_code, interrupted_by
from optuna_energy.host.meters import EnergyMeterError
from optuna_energy.host.terminal import MAX_COLUMNS
from optuna_energy.reading.analysis import (
    AnalysisError,
    TradeOffWeights,
    format_table,
    pareto_trials,
)
from optuna_energy.reading.savings import savings, savings_text
from optuna_energy.reading.study_trials import StudyTrials
from optuna_energy.store.budget import tally
from optuna_energy.store.pooler import pooled_storage
from optuna_energy.store.storage import (
    StorageError,
    mask_url,
    open_storage,
    remember_secrets,
    storage_fault,
)
from optuna_energy.study import create_or_load_study, optimize_study
from optuna_energy.trial.objective import ObjectiveError
from optuna_energy.workers import STORAGE_ENV, launch, plan_workers, run_worker

_USER_ERRORS = (ConfigError, DatasetError, DeviceError, StorageError, EnergyMeterError, AnalysisError,
                ExportError, ObjectiveError, OutputError)


def study_overrides(args: argparse.Namespace) -> dict:
    objectives = (None if args.objectives is None  # "" is an error, not the config's objectives
                  else tuple(name.strip() for name in args.objectives.split(",") if name.strip()))
    return {"storage": _storage_option(args), "study_name": args.study_name,
            "n_trials": args.n_trials,
            "timeout": args.timeout, "device": args.device, "seed": args.seed,
            "sampler": args.sampler, "objectives": objectives}


def _storage_option(args: argparse.Namespace) -> str | None:
    """--storage, else $OPTUNA_ENERGY_STORAGE, else None (the config's); "" is an error later."""
    return args.storage if args.storage is not None else os.environ.get(STORAGE_ENV)


def _run(args: argparse.Namespace) -> int:
    optuna.logging.set_verbosity(optuna.logging.WARNING)  # the progress bar says it better
    config = _config(args)
    study = create_or_load_study(config)
    finished = tally(study).finished
    if finished >= config.study.n_trials:
        print(_fitted(f"Study {study.study_name!r} already has its budget: {finished} finished trials, "
                      f"n_trials = {config.study.n_trials} (the study's total); nothing to run. To extend "
                      "it, give a larger total:"))
        print(f"  {_rerun_command(args, 2 * config.study.n_trials)}")
    else:
        try:
            optimize_study(study, config, show_progress_bar=True)
        except KeyboardInterrupt:  # what the study has so far, then main's one line and exit code
            _print_front(study)
            raise
    _print_front(study)
    return 0


def _print_front(study: optuna.Study) -> None:
    """The study's Pareto front as a table, and what early stopping saved."""
    read = StudyTrials(study)  # one light read for the front, the count and the savings
    front = pareto_trials(read)
    print("\n" + _fitted(f"Pareto front of study {study.study_name!r} ({len(front)} of {len(read.trials)} trials):"))
    table = format_table(study, front)
    print(table)
    if "... (+" in table:
        print("(shortened to fit; full architectures: `optuna-energy report`, user attr architecture_summary)")
    print(f"\n{_fitted(savings_text(savings(read)))}")


def _rerun_command(args: argparse.Namespace, n_trials: int) -> str:
    """The ``run`` command the user gave, with ``--n-trials`` set (passwords masked)."""
    words = [PROG, "run", *([args.config] if args.config else [])]
    for flag, value in (("--storage", args.storage), ("--study-name", args.study_name)):
        if value is not None:
            words += [flag, mask_url(value)]
    return " ".join([*words, "--n-trials", str(n_trials)])


def _config(args: argparse.Namespace) -> StudyConfig:
    overrides = study_overrides(args)
    overrides["name"] = overrides.pop("study_name")
    return load_config(args.config).with_study(**overrides)


def _worker(args: argparse.Namespace) -> int:
    optuna.logging.set_verbosity(optuna.logging.WARNING)  # one line per trial says it better
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    _mask_passwords_in_logs()
    run_worker(_config(args))
    return 0


def _launch(args: argparse.Namespace) -> int:
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    config = _config(args)
    try:
        slots = plan_workers(args.gpus, per_gpu=args.per_gpu or config.workers.per_gpu,
                             cpu_workers=args.workers, available_gpus=BACKENDS["cuda"].count_on_node())
    except ValueError as error:
        raise ConfigError(str(error)) from None
    forwarded = [args.config] if args.config else []
    for flag, value in (("--study-name", config.study.name), ("--n-trials", args.n_trials),
                        ("--timeout", args.timeout), ("--seed", args.seed),
                        ("--sampler", args.sampler), ("--objectives", args.objectives)):
        if value is not None:
            forwarded += [flag, str(value)]
    own = shlex.split(args.run) if args.run is not None else None
    if own == []:
        raise ConfigError("--run must name a program to run, e.g. --run 'python mine.py'")
    with _node_pooler(config, args.pooler or config.workers.pooler) as storage:
        # The launcher's own connections go through the pooler too: one node, one pool. A program
        # of your own makes its study itself (with its own objectives).
        study = None if own else create_or_load_study(config.with_study(storage=storage))
        return launch(slots, forwarded, storage=storage, study=study, command=own)


def _node_pooler(config: StudyConfig, pooler: str) -> contextlib.AbstractContextManager[str]:
    """The storage URL the node's workers use: the study's, or its pooler's while the launch runs."""
    if pooler == "none":
        return contextlib.nullcontext(config.study.storage)
    return pooled_storage(config.study.storage, server_connections=config.workers.pooler_connections)


def load_stored_study(args: argparse.Namespace) -> tuple[optuna.Study, StudyConfig]:
    """The study the options name, with the config they came from.

    Raises:
        AnalysisError: No such study; the message lists the studies the storage holds.
    """
    config = load_config(args.config).with_study(storage=_storage_option(args))
    storage = open_storage(config.study.storage, create=False)
    names = optuna.get_all_study_names(storage)
    name = args.study_name or config.study.name
    if args.study_name is None and args.config is None:
        if len(names) > 1:  # the default study's name would pick one of them silently
            raise AnalysisError(f"{len(names)} studies in {mask_url(config.study.storage)}: "
                                f"{', '.join(names)}; choose one with --study-name")
        if len(names) == 1:
            name = names[0]
    if name not in names:
        raise AnalysisError(f"no study {name!r} in {mask_url(config.study.storage)}; "
                            f"stored studies: {', '.join(names) or 'none'}")
    return optuna.load_study(study_name=name, storage=storage), config.with_study(name=name)


def _report(args: argparse.Namespace) -> int:
    from optuna_energy.reading.report import build_report, payback_text, table_text
    from optuna_energy.reading.report_files import prepare_out_dir, write_report

    study, _ = load_stored_study(args)
    prepare_out_dir(args.out, study=study)  # before the table is printed: a bad path fails first
    weights = TradeOffWeights(accuracy=args.accuracy_weight, cost=args.cost_weight)
    read = StudyTrials(study)  # the table and the report folder share one read of the trials
    report = build_report(read, weights=weights)
    print(_fitted(f"Highlighted models of study {study.study_name!r} "
                  f"({report.n_usable} completed, feasible trials of {report.n_trials}):"))
    print(table_text(report, width=MAX_COLUMNS))
    print(f"\n{_fitted(payback_text(report))}")
    print(f"\n{_fitted(savings_text(report.savings))}")
    paths = write_report(read, args.out, weights=weights)
    print(f"\nwrote into {args.out}:\n{_fitted(', '.join(path.name for path in paths), indent='  ')}")
    return 0


def _dashboard(args: argparse.Namespace) -> int:
    from optuna_energy.reading.dashboard import HOST, recorded_artifact_dir, serve

    config = load_config(args.config).with_study(storage=_storage_option(args))
    open_storage(config.study.storage, create=False)  # a mistyped URL fails here, creating nothing
    artifact_dir = (args.artifact_dir or config.study.artifact_dir
                    or recorded_artifact_dir(config.study.storage))
    print(f"optuna-dashboard on http://{HOST}:{args.port}/dashboard/ for "
          f"{mask_url(config.study.storage)}" + (f" (artifacts: {artifact_dir})" if artifact_dir else ""),
          flush=True)
    try:
        serve(config.study.storage, port=args.port, artifact_dir=artifact_dir)
    except OSError as error:  # binding the port: in use, or not allowed
        raise ConfigError(f"cannot serve on {HOST}:{args.port}: {error.strerror or error} "
                          "(choose another --port)") from None
    return 0


def _export(args: argparse.Namespace) -> int:
    from optuna_energy.export import export_formats

    study, config = load_stored_study(args)
    formats = [fmt for given in args.format or [[DEFAULT_EXPORT_FORMAT]] for fmt in given]
    results = export_formats(study, args.trial, formats=formats, output=args.output,
                             config=config if args.config else None, device=args.device, force=args.force,
                             notify=lambda line: print(line, file=sys.stderr, flush=True))
    for result in results:
        searched = "" if result.search_accuracy is None else f" (search measured {100 * result.search_accuracy:.2f} %)"
        print(f"wrote {result.path} ({result.format}) from trial {args.trial}, weights {result.weights}; "
              f"accuracy {100 * result.accuracy:.2f} %{searched}; file and model agree on a batch "
              f"(largest logit difference {result.max_abs_difference:.2g})")
    return 0


def _fitted(text: str, *, indent: str = "", hanging: str = "") -> str:
    """A paragraph wrapped at word boundaries to ``MAX_COLUMNS`` (a path or URL is never broken),
    every line indented by ``indent`` and the ones after the first by ``hanging`` more."""
    return textwrap.fill(text, width=MAX_COLUMNS, initial_indent=indent, subsequent_indent=indent + hanging,
                         break_long_words=False, break_on_hyphens=False)


def _command_warning(message, category, filename, lineno, line=None) -> str:
    """A warning as the command's own message, wrapped at word boundaries to ``MAX_COLUMNS``."""
    return _fitted(f"{PROG}: warning: {mask_url(str(message))}", hanging="  ") + "\n"


class _MaskPasswords(logging.Filter):
    """Masks storage passwords in every log record a handler writes (Optuna's included)."""

    def filter(self, record: logging.LogRecord) -> bool:
        record.msg, record.args = mask_url(record.getMessage()), None
        return True


def _mask_passwords_in_logs() -> None:
    for logger in (logging.getLogger(), logging.getLogger("optuna")):
        for handler in logger.handlers:
            if not any(isinstance(existing, _MaskPasswords) for existing in handler.filters):
                handler.addFilter(_MaskPasswords())


_HANDLERS: dict[str, Callable[[argparse.Namespace], int]] = {
    "run": _run, "worker": _worker, "launch": _launch,
    "report": _report, "dashboard": _dashboard, "export": _export,
}


def main(argv: Sequence[str] | None = None) -> int:
    """Parse ``argv`` (default: the process's arguments) and run the command; its exit code."""
    return run_command(build_parser().parse_args(argv))


def run_command(args: argparse.Namespace) -> int:
    """Run the command ``cli_parser.build_parser`` parsed; its exit code."""
    for url in (getattr(args, "storage", None), os.environ.get(STORAGE_ENV)):
        if url:
            remember_secrets(url)  # before anything can print it
    previous_format, warnings.formatwarning = warnings.formatwarning, _command_warning
    _mask_passwords_in_logs()
    try:
        return _HANDLERS[args.command](args)
    except _USER_ERRORS as error:
        print(f"{PROG}: error: {mask_url(str(error))}", file=sys.stderr)
        return 2
    except Exception as error:  # a damaged, incomplete or full database, wherever it shows
        fault = storage_fault(error)
        if fault is None:
            raise
        print(f"{PROG}: error: {fault}", file=sys.stderr)
        return 2
    except KeyboardInterrupt as stop:
        print(f"\n{PROG}: {interrupted_by(stop)}; finished trials are stored, run the same command "
              "to resume", file=sys.stderr)
        return exit_code(stop)
    finally:  # a caller's own warnings keep their format after the command
        warnings.formatwarning = previous_format


if __name__ == "__main__":
    sys.exit(main())
