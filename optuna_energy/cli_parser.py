"""The ``optuna-energy`` command line: its commands and options, built from light modules only.

``optuna-energy --help`` and a mistyped option are answered from here before PyTorch, Optuna and
matplotlib are imported (seconds); ``cli`` runs the parsed command.
"""

from __future__ import annotations

import argparse
from collections.abc import Callable

from optuna_energy.choices import DEFAULT_EXPORT_FORMAT, EXPORT_FORMATS, POOLERS, SAMPLER_NAMES, STORAGE_ENV
from optuna_energy.metrics import METRICS

PROG = "optuna-energy"


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


def _formats(text: str) -> list[str]:
    """An argparse type: export formats, comma-separated."""
    formats = [fmt.strip() for fmt in text.split(",")]
    for fmt in formats:
        if fmt not in EXPORT_FORMATS:
            raise argparse.ArgumentTypeError(f"unknown format {fmt!r}; allowed: {', '.join(EXPORT_FORMATS)}")
    return formats


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
    parser.add_argument("--sampler", choices=SAMPLER_NAMES, help="search strategy")
    parser.add_argument("--objectives", help=f"comma-separated, at least two of: {', '.join(METRICS)}")


def add_stored_study_options(parser: argparse.ArgumentParser) -> None:
    """Options of commands that read an existing study: a config, or a storage URL and a name."""
    parser.add_argument("config", nargs="?", help="the study's TOML (gives storage and study name)")
    parser.add_argument("--storage", help="RDB URL of the study, e.g. sqlite:///optuna_energy.db "
                        f"(default: ${STORAGE_ENV}, then the config)")
    parser.add_argument("--study-name", help="the study (default: the config's, or the only one stored)")


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

    dashboard = commands.add_parser(
        "dashboard", help="start optuna-dashboard on 127.0.0.1 with the artifact store",
        description="Serve optuna-dashboard for the storage on the loopback interface.")
    dashboard.add_argument("config", nargs="?", help="a study TOML (gives storage and artifact_dir)")
    dashboard.add_argument("--storage", help="RDB URL, e.g. sqlite:///optuna_energy.db "
                           f"(default: ${STORAGE_ENV}, then the config)")
    dashboard.add_argument("--artifact-dir",
                           help="the studies' artifact_dir (default: the config's, else the one the studies recorded)")
    dashboard.add_argument("--port", type=_port, default=8080, help="TCP port, 1-65535 (default 8080)")

    export = commands.add_parser(
        "export", help="write a trial's model as a torch.export .pt2 file, ONNX, a state_dict or TorchScript",
        description="Rebuild a trial's model with the weights the search kept (retrained with its "
                    "stored hyperparameters and seed only where those are gone), write it in each "
                    "format, and check each file predicts as the model does.")
    add_stored_study_options(export)
    export.add_argument("--trial", type=int, required=True, help="trial number (see `report`)")
    export.add_argument("--format", type=_formats, action="append", metavar="FORMAT[,FORMAT]",
                        help=f"{', '.join(EXPORT_FORMATS)}; comma-separated or repeated for several "
                        f"(default {DEFAULT_EXPORT_FORMAT}: torch.export, loaded with torch.export.load; "
                        "torchscript is deprecated by PyTorch)")
    export.add_argument("-o", "--output", required=True,
                        help="file to write; with several formats, each format's suffix replaces its "
                        "own (model.pt2 gives model.onnx, model.pt, model.torchscript.pt)")
    export.add_argument("--force", action="store_true",
                        help="replace an existing file that is not an earlier export (never the study's database)")
    export.add_argument("--device", default="cpu", help="where to retrain: cpu, cuda or cuda:N (default cpu)")


def _study_command(commands, name: str, *, help: str, description: str) -> argparse.ArgumentParser:
    """A subcommand that runs trials, with the shared study options."""
    command = commands.add_parser(name, help=help, description=description)
    add_study_options(command)
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
    _study_command(commands, "run", help="run or resume a study and print its Pareto front",
                   description="Run or resume a study, then print its Pareto front.")
    _study_command(
        commands, "worker",
        help="run trials of a shared study until the study has its budget",
        description="Join (or create) a study and run trials until the study as a whole has "
                    "n_trials finished ones. Start as many as you like, on any machines, "
                    "against one PostgreSQL/MySQL database or journal file.")
    launcher = _study_command(
        commands, "launch",
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
    launcher.add_argument("--run", metavar="COMMAND",
                          help="run COMMAND (your own objective's program, e.g. 'python mine.py') in "
                          "each worker's place: it gets the worker's GPU, the GPU's lock folder "
                          "(optuna_energy.gpu_share) and the storage URL in $" + STORAGE_ENV)
    launcher.add_argument("--pooler", choices=POOLERS,
                          help="'pgbouncer': run PgBouncer for this node's workers, so hundreds of "
                          "workers fit a PostgreSQL server's connection limit (default: the config's "
                          "[workers] pooler, none)")
    _add_analysis_commands(commands)
    return parser
