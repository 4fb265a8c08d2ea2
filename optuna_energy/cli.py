"""The ``optuna-energy`` command."""

from __future__ import annotations

import argparse
import logging
import os
import sys
import warnings
from collections.abc import Callable, Sequence

import optuna

from optuna_energy.config import (
    SAMPLERS,
    ConfigError,
    StudyConfig,
    load_config,
)
from optuna_energy.data import DatasetError
from optuna_energy.export import DEFAULT_FORMAT, FORMATS, ExportError
from optuna_energy.host.devices import BACKENDS, DeviceError
from optuna_energy.host.files import OutputError
from optuna_energy.host.interrupts import exit_code, interrupted_by
from optuna_energy.host.meters import EnergyMeterError
from optuna_energy.metrics import METRICS
from optuna_energy.reading.analysis import (
    AnalysisError,
    TradeOffWeights,
    format_table,
    pareto_trials,
)
from optuna_energy.reading.savings import savings, savings_text
from optuna_energy.reading.study_trials import StudyTrials
from optuna_energy.store.budget import tally
from optuna_energy.store.storage import (
    StorageError,
    mask_url,
    open_storage,
    remember_secrets,
    storage_fault,
)
from optuna_energy.study import create_or_load_study, optimize_study
from optuna_energy.trial.objective import ObjectiveError
from optuna_energy.workers import (
    STORAGE_ENV,
    launch,
    plan_workers,
    run_worker,
)

PROG = "optuna-energy"
_USER_ERRORS = (ConfigError, DatasetError, DeviceError, StorageError, EnergyMeterError, AnalysisError,
                ExportError, ObjectiveError, OutputError)


def _number(kind: Callable[[str], float], *, zero_allowed: bool = False) -> Callable[[str], float]:
    """An argparse type: ``kind`` of the text, above zero (or at least zero)."""
    wanted = "a number >= 0" if zero_allowed else f"a positive {kind.__name__}"

    def parse(text: str) -> float:
        try:
            value = kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected {wanted}, got {text!r}") from None
        if not (value >= 0 if zero_allowed else value > 0):
            raise argparse.ArgumentTypeError(f"expected {wanted}, got {text!r}")
        return value

    parse.__name__ = kind.__name__
    return parse


def _port(text: str) -> int:
    """An argparse type: a TCP port number."""
    try:
        port = int(text)
    except ValueError:
        port = 0
    if not 1 <= port <= 65535:
        raise argparse.ArgumentTypeError(f"expected a TCP port from 1 to 65535, got {text!r}")
    return port


def add_study_options(parser: argparse.ArgumentParser) -> None:
    """Options shared by every command that runs trials; each overrides the config's [study]."""
    parser.add_argument("config", nargs="?",
                        help="study TOML (default: the embedded digits study, studies/digits.toml)")
    parser.add_argument("--storage", help="sqlite:///optuna_energy.db, postgresql://user@host/db, "
                        f"mysql://..., journal:///file.log (default: ${STORAGE_ENV}, then the config)")
    parser.add_argument("--study-name", help="study to create or resume")
    parser.add_argument("--n-trials", type=_number(int), help="total trials the study should reach")
    parser.add_argument("--timeout", type=_number(float), help="stop starting trials after this many seconds")
    parser.add_argument("--device", help="auto, cpu, cuda or cuda:N")
    parser.add_argument("--seed", type=int, help="seed for the sampler and each trial")
    parser.add_argument("--sampler", choices=tuple(SAMPLERS), help="search strategy")
    parser.add_argument("--objectives", help=f"comma-separated, at least two of: {', '.join(METRICS)}")


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
        print(f"Study {study.study_name!r} already has its budget: {finished} finished trials, "
              f"n_trials = {config.study.n_trials} (the study's total); nothing to run. To extend it, "
              f"give a larger total: {_rerun_command(args, 2 * config.study.n_trials)}")
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
    print(f"\nPareto front of study {study.study_name!r} ({len(front)} of {len(read.trials)} trials):")
    table = format_table(study, front)
    print(table)
    if "... (+" in table:
        print("(shortened to fit; full architectures: `optuna-energy report`, user attr architecture_summary)")
    print(f"\n{savings_text(savings(read))}")


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
    study = create_or_load_study(config)  # once here: bad URLs and passwords fail once, not per worker
    forwarded = [args.config] if args.config else []
    for flag, value in (("--study-name", config.study.name), ("--n-trials", args.n_trials),
                        ("--timeout", args.timeout), ("--seed", args.seed),
                        ("--sampler", args.sampler), ("--objectives", args.objectives)):
        if value is not None:
            forwarded += [flag, str(value)]
    return launch(slots, forwarded, storage=config.study.storage, study=study)


def add_stored_study_options(parser: argparse.ArgumentParser) -> None:
    """Options of commands that read an existing study: a config, or a storage URL and a name."""
    parser.add_argument("config", nargs="?", help="the study's TOML (gives storage and study name)")
    parser.add_argument("--storage", help="RDB URL of the study, e.g. sqlite:///optuna_energy.db "
                        f"(default: ${STORAGE_ENV}, then the config)")
    parser.add_argument("--study-name", help="the study (default: the config's, or the only one stored)")


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
    print(f"Highlighted models of study {study.study_name!r} "
          f"({report.n_usable} completed, feasible trials of {report.n_trials}):")
    print(table_text(report))
    print(f"\n{payback_text(report)}")
    print(f"\n{savings_text(report.savings)}")
    paths = write_report(read, args.out, weights=weights)
    print(f"\nwrote {', '.join(str(path) for path in paths)}")
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
    from optuna_energy.export import export_trial

    study, config = load_stored_study(args)
    result = export_trial(study, args.trial, fmt=args.format, path=args.output,
                          config=config if args.config else None, device=args.device, force=args.force)
    searched = "" if result.search_accuracy is None else f" (search measured {100 * result.search_accuracy:.2f} %)"
    print(f"wrote {result.path} ({result.format}) from trial {args.trial}, weights {result.weights}; "
          f"accuracy {100 * result.accuracy:.2f} %{searched}; file and model agree on a batch "
          f"(largest logit difference {result.max_abs_difference:.2g})")
    return 0


def _add_analysis_commands(commands: argparse._SubParsersAction) -> None:
    report = commands.add_parser(
        "report", help="write the highlighted models' table and the figures of a study",
        description="Print Table I (the lowest-cost, most accurate and best trade-off model per "
                    "cost) and write it as Markdown and CSV with Fig. 1, Fig. 2 and hypervolume PNGs.")
    add_stored_study_options(report)
    report.add_argument("--out", required=True, help="folder for report.md, table.md/.csv and the PNGs")
    report.add_argument("--accuracy-weight", type=_number(float, zero_allowed=True), default=1.0,
                        help="weight of the accuracy shortfall in the best trade-off (default 1)")
    report.add_argument("--cost-weight", type=_number(float, zero_allowed=True), default=1.0,
                        help="weight of the cost in the best trade-off (default 1)")
    report.set_defaults(handler=_report)

    dashboard = commands.add_parser(
        "dashboard", help="start optuna-dashboard on 127.0.0.1 with the artifact store",
        description="Serve optuna-dashboard for the storage on the loopback interface.")
    dashboard.add_argument("config", nargs="?", help="a study TOML (gives storage and artifact_dir)")
    dashboard.add_argument("--storage", help="RDB URL, e.g. sqlite:///optuna_energy.db "
                           f"(default: ${STORAGE_ENV}, then the config)")
    dashboard.add_argument("--artifact-dir",
                           help="the studies' artifact_dir (default: the config's, else the one the studies recorded)")
    dashboard.add_argument("--port", type=_port, default=8080, help="TCP port, 1-65535 (default 8080)")
    dashboard.set_defaults(handler=_dashboard)

    export = commands.add_parser(
        "export", help="write a trial's model as a torch.export .pt2 file, ONNX, a state_dict or TorchScript",
        description="Rebuild a trial's model (kept weights, or retrained with its stored "
                    "hyperparameters and seed), write it, and check the file predicts as the model does.")
    add_stored_study_options(export)
    export.add_argument("--trial", type=int, required=True, help="trial number (see `report`)")
    export.add_argument("--format", choices=FORMATS, default=DEFAULT_FORMAT,
                        help=f"file format (default {DEFAULT_FORMAT}: torch.export, loaded with torch.export.load; "
                        "torchscript is deprecated by PyTorch)")
    export.add_argument("-o", "--output", required=True, help="file to write")
    export.add_argument("--force", action="store_true",
                        help="replace an existing file that is not an earlier export (never the study's database)")
    export.add_argument("--device", default="cpu", help="where to retrain: cpu, cuda or cuda:N (default cpu)")
    export.set_defaults(handler=_export)


def _study_command(commands, name: str, handler, *, help: str, description: str) -> argparse.ArgumentParser:
    """A subcommand that runs trials: the shared study options and its handler."""
    command = commands.add_parser(name, help=help, description=description)
    add_study_options(command)
    command.set_defaults(handler=handler)
    return command


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog=PROG,
        description="Energy-aware multi-objective neural architecture search on Optuna. "
                    "Searches a 32-slot CNN space for models that are accurate and cheap "
                    "(inference time, parameters, energy per inference).",
        epilog=f"Start with: {PROG} run   (the embedded digits study, studies/digits.toml, stored in "
               "./optuna_energy.db)",
    )
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    _study_command(commands, "run", _run, help="run or resume a study and print its Pareto front",
                   description="Run or resume a study, then print its Pareto front.")
    _study_command(
        commands, "worker", _worker,
        help="run trials of a shared study until the study has its budget",
        description="Join (or create) a study and run trials until the study as a whole has "
                    "n_trials finished ones. Start as many as you like, on any machines, "
                    "against one PostgreSQL/MySQL database or journal file.")
    launcher = _study_command(
        commands, "launch", _launch,
        help="start workers on each GPU of this node and stream their logs",
        description="Start workers on this node, --per-gpu on each GPU (CUDA_VISIBLE_DEVICES set "
                    "for each) or, without a GPU, --workers CPU workers. Ctrl-C or SIGTERM stops "
                    "them; their running trials are queued again.")
    launcher.add_argument("--gpus", help="'all' or GPU indices like 0,1,2 (default: all GPUs, "
                          "or CPU workers when there is none)")
    launcher.add_argument("--per-gpu", "--workers-per-gpu", type=_number(int),
                          help="workers sharing each GPU: training overlaps, measuring runs alone "
                          "(default: the config's [workers] per_gpu, 1)")
    launcher.add_argument("--workers", type=_number(int), default=1,
                          help="CPU workers when this node has no GPU (default 1)")
    _add_analysis_commands(commands)
    return parser


def _one_line_warning(message, category, filename, lineno, line=None) -> str:
    return f"{PROG}: warning: {mask_url(str(message))}\n"


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


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    for url in (getattr(args, "storage", None), os.environ.get(STORAGE_ENV)):
        if url:
            remember_secrets(url)  # before anything can print it
    warnings.formatwarning = _one_line_warning
    _mask_passwords_in_logs()
    try:
        return args.handler(args)
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


if __name__ == "__main__":
    sys.exit(main())
