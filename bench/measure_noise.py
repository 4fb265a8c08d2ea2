"""Which inference-time protocol gives the same value on an idle and on a loaded machine?

Not a test; results go to docs/BENCHMARKS.md ("Measurement noise").

    python bench/measure_noise.py run --out bench/results/measure_noise/run.json
    python bench/measure_noise.py report bench/results/measure_noise/run.json

``run`` builds ``--models`` untrained architectures of the digits space (the embedded default
config, sampled by Optuna's ``RandomSampler`` with ``--seed``; weights seeded too) and measures
them with the package's protocol (``measure_interleaved``: the models take turns, ``--rounds``
windows of ``--window`` seconds each, every pass timed on the wall clock and in the measuring
thread's CPU time) in blocks. Each block runs under one *arm* (``--arms``: torch's thread
count, pinning, the protocol's ``clock``) and one *condition*: ``idle`` (whatever else the
machine runs: its load is recorded) or ``loaded`` (two extra ``while 1: pass`` processes).
Blocks come in pairs, idle then loaded, the order reversed every other pair, for ``--pairs``
pairs per arm. Each block keeps the value the package stores (``seconds_per_pass`` on the
arm's clock) and the share of the process's CPU time the measuring thread used.

``report`` derives protocols from the recorded passes (k windows, the window's length, the
statistic: a quantile of all passes, or the median or minimum of the windows' mean pass) and
gives, per arm and protocol, the median and worst ``|loaded / idle - 1|`` over models and pairs,
the median relative spread the protocol would record, and its cost: the seconds of timed passes
it needs per model. Energy is the estimate here (no meter on this machine) and is not compared.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import statistics
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import optuna
import torch

from optuna_energy.config import load_config
from optuna_energy.data import DeviceData, load_dataset
from optuna_energy.host.files import write_text
from optuna_energy.host.meters import EstimateMeter
from optuna_energy.measuring.measure import Workload, data_workload, measure_interleaved
from optuna_energy.measuring.statistic import quantile, relative_spread
from optuna_energy.model.arch import build_model, profile, summarize
from optuna_energy.model.space import sample_architecture

ARMS = {
    "threads default": {"threads": None, "pin": False, "clock": "wall"},
    "threads 1": {"threads": 1, "pin": False, "clock": "wall"},
    "threads 1, pinned": {"threads": 1, "pin": True, "clock": "wall"},
    "clock auto": {"threads": None, "pin": False, "clock": "auto"},
}
"""Torch's intra-op threads (``None``: torch's default, one per core), whether the process is
pinned to one core while it measures, and the protocol's ``clock`` (``[measure] clock``:
``auto`` on a CPU sets one thread itself). ``threads default`` is ``clock = "wall"`` as a study
sets it; ``clock auto`` the default."""
LOADERS = 2
WARMUP_BATCHES = 2


def workloads(models: int, seed: int) -> tuple[list[Workload], list[str]]:
    """``models`` untrained architectures of the digits space on its evaluation set."""
    config = load_config(None)
    data = DeviceData(load_dataset(config.dataset, seed=0), torch.device("cpu"))
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=seed))
    built, names = [], []
    for number in range(models):
        trial = study.ask()
        spec = sample_architecture(trial, config.space, data.input_shape).spec
        torch.manual_seed(seed + number)
        model = build_model(spec, data.input_shape, data.n_classes).eval()
        built.append(data_workload(model, data, batch_size=config.measure.batch_size,
                                   costs=profile(spec, data.input_shape, data.n_classes)))
        names.append(summarize(spec))
        study.tell(trial, 0.0)
    return built, names


@contextlib.contextmanager
def arm_settings(threads: int | None, pin: bool) -> Iterator[None]:
    """Torch's thread count and the process's CPUs for one arm, restored afterwards."""
    threads_before, cpus_before = torch.get_num_threads(), os.sched_getaffinity(0)
    if threads is not None:
        torch.set_num_threads(threads)
    if pin:
        os.sched_setaffinity(0, {min(cpus_before)})
    try:
        yield
    finally:
        torch.set_num_threads(threads_before)
        os.sched_setaffinity(0, cpus_before)


@contextlib.contextmanager
def background_load(loaded: bool) -> Iterator[None]:
    """``LOADERS`` busy processes while the block runs (none for an idle block)."""
    loaders = [subprocess.Popen([sys.executable, "-c", "while 1: pass"]) for _ in range(LOADERS * loaded)]
    try:
        if loaders:
            time.sleep(1.0)  # the scheduler spreads them before the block starts
        yield
    finally:
        for loader in loaders:
            loader.terminate()
            loader.wait()


def run(args: argparse.Namespace) -> None:
    built, names = workloads(args.models, args.seed)
    blocks: list[dict[str, Any]] = []
    started = time.time()
    for pair in range(args.pairs):
        order = ("idle", "loaded") if pair % 2 == 0 else ("loaded", "idle")
        for condition in order:
            with background_load(condition == "loaded"):
                for arm in args.arms:
                    settings = ARMS[arm]
                    with arm_settings(settings["threads"], settings["pin"]):
                        load_before = os.getloadavg()[0]
                        thread_before, process_before = time.thread_time(), time.process_time()
                        measured = measure_interleaved(
                            built, warmup_batches=WARMUP_BATCHES, windows=args.rounds,
                            min_window_seconds=args.window, meter=EstimateMeter(),
                            clock=settings["clock"])
                        thread_share = ((time.thread_time() - thread_before)
                                        / (time.process_time() - process_before))
                    blocks.append({"pair": pair, "condition": condition, "arm": arm,
                                   "clock": measured[0].clock, "thread_cpu_share": thread_share,
                                   "stored": [one.seconds_per_pass for one in measured],
                                   "spread": [one.seconds_per_pass_spread for one in measured],
                                   "load_before": load_before, "load": measured[0].load,
                                   "passes": [[list(window.pass_seconds) for window in one.windows]
                                              for one in measured],
                                   "cpu": [[list(window.pass_cpu_seconds) for window in one.windows]
                                           for one in measured]})
                    print(f"pair {pair} {condition:6} {arm:18} load {load_before:.2f} -> "
                          f"{measured[0].load['load_1min']}, others' CPU share "
                          f"{measured[0].load['cpu_others']}, {time.time() - started:.0f} s",
                          flush=True)
    write_text(Path(args.out), json.dumps({
        "command": " ".join(sys.argv), "models": names, "seed": args.seed, "rounds": args.rounds,
        "window_s": args.window, "cpus": os.cpu_count(), "torch_threads_default": torch.get_num_threads(),
        "seconds": time.time() - started, "blocks": blocks}))


def _first_seconds(passes: list[float], seconds: float) -> list[float]:
    """The passes of a window cut at ``seconds``: what a window of that length would have timed."""
    kept, total = [], 0.0
    for duration in passes:
        kept.append(duration)
        total += duration
        if total >= seconds:
            break
    return kept


def _statistics() -> dict[str, Any]:
    """Statistic name -> (the value, each window's own estimate) from a list of windows' passes."""
    def pass_quantile(q: float) -> Any:
        return lambda windows: (quantile([p for w in windows for p in w], q),
                                [quantile(w, q) for w in windows])

    def of_window_means(pick: Any) -> Any:
        def compute(windows: list[list[float]]) -> tuple[float, list[float]]:
            means = [statistics.fmean(window) for window in windows]
            return pick(means), means
        return compute

    return {"pass min": pass_quantile(0.0), "pass q10": pass_quantile(0.1),
            "pass q25": pass_quantile(0.25), "pass median": pass_quantile(0.5),
            "window mean, median": of_window_means(statistics.median),
            "window mean, min": of_window_means(min)}


def protocols(rounds: int, window: float) -> list[tuple[str, int, float, str, str]]:
    """(label, k windows, window seconds, statistic, clock) derived from what ``run`` recorded;
    ``clock`` is ``wall`` (the time a pass took) or ``cpu`` (the CPU time the process used in it)."""
    derived = [(f"today: 1 x {2 * window:g} s, mean", 1, 2 * window, "mean of one long window", "wall")]
    for clock in ("wall", "cpu"):
        for k in sorted({1, 3, 5, rounds}):
            if k > rounds:
                continue
            for seconds in (window / 2, window):
                for name in _statistics():
                    derived.append((f"{k} x {seconds:g} s, {name}, {clock}", k, seconds, name, clock))
    return derived


def _value(walls: list[list[float]], cpus: list[list[float]], k: int, seconds: float, name: str,
           clock: str) -> tuple[float, float | None, float]:
    """A protocol's stored value, its spread and the seconds of passes it timed."""
    times = walls if clock == "wall" else cpus
    if name == "mean of one long window":
        # Today's single window, read from the recorded passes in their order: the first
        # ``seconds`` of passes (windows follow each other as a long window's passes would).
        kept = len(_first_seconds([p for w in walls for p in w], seconds))
        passes = [p for w in times for p in w][:kept]
        return statistics.fmean(passes), None, sum([p for w in walls for p in w][:kept])
    lengths = [len(_first_seconds(window, seconds)) for window in walls[:k]]
    cut = [window[:length] for window, length in zip(times, lengths)]
    value, per_window = _statistics()[name](cut)
    return value, relative_spread(per_window), sum(sum(w[:n]) for w, n in zip(walls, lengths))


def _stored_row(arm: str, pairs: list[dict[str, dict[str, Any]]]) -> tuple[Any, ...]:
    """The row of the value the package stored in each block (its clock, its windows)."""
    deviations = [abs(busy / quiet - 1) for both in pairs
                  for quiet, busy in zip(both["idle"]["stored"], both["loaded"]["stored"])]
    spreads = [spread for both in pairs for block in both.values() for spread in block["spread"]
               if spread is not None]
    costs = [sum(map(sum, passes)) for both in pairs for passes in both["idle"]["passes"]]
    return (arm, f"stored: {pairs[0]['idle']['clock']} clock", statistics.median(deviations),
            max(deviations), statistics.median(spreads) if spreads else None, statistics.fmean(costs))


def report(args: argparse.Namespace) -> str:
    recorded = json.loads(Path(args.results).read_text())
    blocks = recorded["blocks"]
    lines = [f"`{recorded['command']}`: {len(recorded['models'])} models, {recorded['rounds']} rounds "
             f"of {recorded['window_s']:g} s windows, {recorded['cpus']} CPUs, "
             f"{recorded['seconds'] / 60:.1f} min", "",
             "| block | arm | load avg (1 min) at start, end | others' CPU share | measuring thread's "
             "share of the process's CPU time |", "|---|---|---|---|---|"]
    for block in blocks:
        share = block.get("thread_cpu_share")  # not recorded by runs before the clock setting
        lines.append(f"| {block['pair']} {block['condition']} | {block['arm']} | "
                     f"{block['load_before']:.2f}, {block['load']['load_1min']} | "
                     f"{block['load']['cpu_others']} | {'–' if share is None else f'{share:.3f}'} |")
    table = []
    for arm in dict.fromkeys(block["arm"] for block in blocks):
        pairs: dict[int, dict[str, dict[str, Any]]] = {}
        for block in blocks:
            if block["arm"] == arm:
                pairs.setdefault(block["pair"], {})[block["condition"]] = block
        both_measured = [both for both in pairs.values() if len(both) == 2]
        if all("stored" in both["idle"] for both in both_measured):
            table.append(_stored_row(arm, both_measured))
        for label, k, seconds, name, clock in protocols(recorded["rounds"], recorded["window_s"]):
            deviations, spreads, costs = [], [], []
            for both in pairs.values():
                if len(both) < 2:
                    continue
                idle, loaded = both["idle"], both["loaded"]
                for model in range(len(recorded["models"])):
                    quiet = _value(idle["passes"][model], idle["cpu"][model], k, seconds, name, clock)
                    busy = _value(loaded["passes"][model], loaded["cpu"][model], k, seconds, name, clock)
                    deviations.append(abs(busy[0] / quiet[0] - 1))
                    spreads += [spread for spread in (quiet[1], busy[1]) if spread is not None]
                    costs.append(quiet[2])
            if deviations:
                table.append((arm, label, statistics.median(deviations), max(deviations),
                              statistics.median(spreads) if spreads else None, statistics.fmean(costs)))
    table.sort(key=lambda row: (row[3], row[2]))
    lines += ["", "| arm | protocol | median \\|loaded/idle - 1\\| | worst | median spread | "
              "timed s per model (idle) |", "|---|---|---|---|---|---|"]
    chosen = [row for row in table[args.top:] if row[1].startswith(("today", "stored")) or row[1] in args.show]
    for arm, label, median, worst, spread, cost in table[:args.top] + chosen:
        spread_text = "–" if spread is None else f"{100 * spread:.1f} %"
        lines.append(f"| {arm} | {label} | {100 * median:.1f} % | {100 * worst:.1f} % | "
                     f"{spread_text} | {cost:.2f} |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    commands = parser.add_subparsers(dest="command", required=True)
    measure = commands.add_parser("run", help="measure the models in idle and loaded blocks")
    measure.add_argument("--out", required=True)
    measure.add_argument("--models", type=int, default=12)
    measure.add_argument("--seed", type=int, default=0)
    measure.add_argument("--pairs", type=int, default=3, help="idle/loaded block pairs per arm")
    measure.add_argument("--rounds", type=int, default=8, help="windows per model in a block")
    measure.add_argument("--window", type=float, default=0.25, help="seconds per window")
    measure.add_argument("--arms", nargs="+", choices=list(ARMS), default=list(ARMS),
                         help="which arms to measure, in this order within each block")
    summary = commands.add_parser("report", help="protocols derived from a run, as Markdown")
    summary.add_argument("results")
    summary.add_argument("--top", type=int, default=25, help="rows of the best protocols shown")
    summary.add_argument("--show", nargs="*", default=[], help="protocols shown wherever they rank")
    args = parser.parse_args()
    if args.command == "run":
        run(args)
    else:
        print(report(args))


if __name__ == "__main__":
    main()
