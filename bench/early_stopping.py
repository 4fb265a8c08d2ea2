"""Samplers with early stopping against full training, at an equal epoch budget.

Not a test; results go to docs/BENCHMARKS.md.

    nice -n 10 python bench/early_stopping.py run --setting digits --seeds 300 ... 319 \
        --out bench/results/early_stopping/digits-300.json [--load 2]
    python bench/early_stopping.py report bench/results/early_stopping/digits-300.json
    python bench/early_stopping.py costs --models 24

``run`` gives every arm (``<sampler>+es``: early stopping, ``<sampler>``: full training, for every
sampler of ``optuna_energy.choices.SAMPLER_NAMES``) the same budget of training epochs (``[study]
max_train_epochs``), the same constraints (every sampler reads the ones the objective sets) and
costs first (``[study] costs_first = true``: no arm trains a network over a limit), runs it
through the study loop on an in-memory study and appends one record per (arm, seed, load) to the
JSON file (an interrupted run resumes). ``--load N`` runs N busy processes (at the benchmark's
nice level) during each run: the noise arm; every record keeps the machine's load average over
its run. Hypervolume is computed as in ``bench/sampler_comparison.py`` (its functions:
``1 - accuracy`` and log10 costs, min-max normalised over every completed trial of every run of
the setting, reference 1.1, learned trials only); throughput counts the networks trained (at
least one epoch), and the ones costs first skipped are counted apart. ``report`` adds paired
win counts, a paired t-test and Wilcoxon's signed-rank test between arms on the seeds both ran.
``costs`` measures inference time and energy of models untrained and after full training, for
the claim in docs/energy.md that costs can be measured before training. ``--set
SECTION.KEY=VALUE`` changes the config of every arm (tuning variants; ``report`` shows each
variant as an arm of its own).
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import itertools
import json
import os
import subprocess
import sys
import threading
import time
import warnings
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import optuna
import torch
from optuna.trial import TrialState
from scipy import stats

sys.path.insert(0, str(Path(__file__).parent))
from sampler_comparison import _mean_sd, _run_metrics, pooled_scale

from optuna_energy.choices import SAMPLER_NAMES
from optuna_energy.config import StudySection, load_config
from optuna_energy.data import DeviceData, load_dataset
from optuna_energy.host.files import write_text
from optuna_energy.host.meters import EstimateMeter
from optuna_energy.model.arch import build_model, profile
from optuna_energy.model.space import sample_architecture, sample_training
from optuna_energy.run.loop import optimize_within_budget
from optuna_energy.store.budget import counts
from optuna_energy.store.record import TrialRecord
from optuna_energy.study import create_sampler
from optuna_energy.trial.costs_first import measure_architecture
from optuna_energy.trial.objective import Objective
from optuna_energy.trial.train import TrialFailure, train

BASE = Path(__file__).with_name("sampler_comparison.toml")
SETTINGS = {
    # The main job's digits study (6 epochs: rungs at 1 and 3 with factor 3), cheap to measure.
    "digits": {"training": {"epochs": 6}, "budget": 120},
    # Harder: half the training images, 6 epochs (rungs 1, 2, 4 with factor 2) and a parameter
    # limit that most of the space exceeds (about 4 in 5 random architectures), so costs first
    # has something to skip.
    "harder": {"training": {"epochs": 6}, "dataset": {"validation_fraction": 0.5},
               "constraints": {"max_params": 20000}, "early_stopping": {"factor": 2},
               "budget": 120},
}
ARMS = tuple(arm for sampler in sorted(SAMPLER_NAMES, key=lambda name: name != StudySection.sampler)
             for arm in (f"{sampler}+es", sampler))
"""``<sampler>+es``: early stopping; ``<sampler>``: full training; both with costs first. The
default sampler's first, so that the paired tests set it against each other sampler."""
LOAD_SAMPLE_SECONDS = 5.0


def setting_config(setting: str, arm: str, seed: int, overrides: dict[str, dict] | None = None):
    """The study config of one arm: the benchmark's base, the setting, early stopping on or off
    and costs first on, then ``overrides`` (``{section: {key: value}}``, from ``--set``)."""
    raw = _toml(BASE)
    extra = SETTINGS[setting]
    for section, values in extra.items():
        if section != "budget":
            raw.setdefault(section, {}).update(values)
    sampler, _, es = arm.partition("+")
    raw.setdefault("early_stopping", {})["enabled"] = es == "es"
    raw["evolution"] = {"population_size": 8}  # budgets of 30 to 60 trials; NSGA-II's generations too
    # Costs first in every arm: full training that trained networks over a limit would spend its
    # budget on networks that can never be feasible, and compare two rules at once.
    raw["study"].update(sampler=sampler, seed=seed, n_trials=10_000, max_train_epochs=extra["budget"],
                        costs_first=True)
    for section, values in (overrides or {}).items():
        raw.setdefault(section, {}).update(values)
    return load_config(raw)


def parse_overrides(pairs: list[str]) -> dict[str, dict]:
    """``["early_stopping.first_rung=2", ...]`` as ``{"early_stopping": {"first_rung": 2}}``."""
    import tomllib

    overrides: dict[str, dict] = {}
    for pair in pairs:
        key, _, value = pair.partition("=")
        section, _, name = key.partition(".")
        if not (section and name and value):
            raise SystemExit(f"--set wants SECTION.KEY=VALUE (a TOML value), got {pair!r}")
        overrides.setdefault(section, {})[name] = tomllib.loads(f"v = {value}")["v"]
    return overrides


def _toml(path: Path) -> dict:
    import tomllib

    with path.open("rb") as handle:
        return tomllib.load(handle)


@contextlib.contextmanager
def busy_machine(processes: int) -> Iterator[list[float]]:
    """``processes`` busy loops beside the benchmark (at its nice level, which they inherit) while
    the block runs; yields the machine's 1-minute load averages, sampled every
    ``LOAD_SAMPLE_SECONDS`` and at both ends."""
    busy = [subprocess.Popen([sys.executable, "-c", "while True: pass"]) for _ in range(processes)]
    samples = [os.getloadavg()[0]]
    stop = threading.Event()

    def sample() -> None:
        while not stop.wait(LOAD_SAMPLE_SECONDS):
            samples.append(os.getloadavg()[0])

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    try:
        yield samples
    finally:
        stop.set()
        sampler.join()
        samples.append(os.getloadavg()[0])
        for process in busy:
            process.kill()
            process.wait()


def run(setting: str, arms: list[str], seeds: list[int], out: Path,
        overrides: dict[str, dict] | None = None, load: int = 0) -> None:
    records = json.loads(out.read_text()) if out.exists() else []
    done = {(r["arm"], r["seed"], r.get("load", 0)) for r in records}
    for seed in seeds:
        for arm in arms:
            if (arm, seed, load) in done:
                continue
            config = setting_config(setting, arm, seed, overrides)
            data = DeviceData(load_dataset(config.dataset, seed=0), torch.device("cpu"))
            study = optuna.create_study(directions=config.directions, sampler=create_sampler(
                config.study.sampler, seed=seed, evolution=config.evolution))
            objective = Objective(config, data, meter=EstimateMeter())
            with busy_machine(load) as load_average:
                start = time.perf_counter()
                optimize_within_budget(study, objective, n_trials=config.study.n_trials,
                                       catch=(TrialFailure,), training=objective.training_budget)
                seconds = time.perf_counter() - start
            trials = study.get_trials(deepcopy=False)
            completed = [t for t in trials if t.state == TrialState.COMPLETE]
            evaluated = [t for t in trials if counts(t)]
            stored = [TrialRecord.of(t) for t in evaluated]
            records.append({
                "setting": setting, "arm": arm, "seed": seed, "seconds": seconds,
                "overrides": overrides or {}, "load": load,
                "load_average": [min(load_average), float(np.mean(load_average)), max(load_average)],
                "objectives": list(config.study.objectives),
                "values": [list(t.values) for t in completed],
                "feasible": [all(v <= 0 for v in t.constraints.values()) for t in completed],
                "evaluated": len(evaluated),
                "trained": sum((r.epochs_trained or 0) > 0 for r in stored),
                "skipped": sum(bool(r.stop_reason and r.stop_reason.startswith("over ")) for r in stored),
                "epochs": sum(r.epochs_trained or 0 for r in stored),
                "stopped": [r.stop_reason for r in stored if r.stop_reason],
            })
            out.parent.mkdir(parents=True, exist_ok=True)
            write_text(out, json.dumps(records))
            print(f"{setting} {arm_label(records[-1]):13s} seed {seed}: {records[-1]['trained']} trained, "
                  f"{records[-1]['skipped']} skipped over a limit, {len(completed)} completed, "
                  f"{records[-1]['epochs']} epochs in {seconds:.0f} s (load average "
                  f"{min(load_average):.1f}-{max(load_average):.1f})", flush=True)


def arm_label(record: dict) -> str:
    """The arm, with the ``--set`` overrides and the background load it ran with: tuning variants
    and noise arms are arms of their own."""
    tags = [f"{section}.{key}={value}" for section, values in record.get("overrides", {}).items()
            for key, value in values.items()]
    if record.get("load"):
        tags.append(f"load {record['load']}")
    return record["arm"] + (f" [{', '.join(tags)}]" if tags else "")


def compared_pairs(arms: list[str]) -> list[tuple[str, str]]:
    """Pairs of arms that ran with the same tags: each sampler's early stopping against its full
    training, and every two samplers with early stopping against each other."""
    pairs = []
    for first, second in itertools.combinations(arms, 2):
        (base, _, tags), (other, _, other_tags) = first.partition(" "), second.partition(" ")
        if tags == other_tags and base.endswith("+es") and (
                other == base.removesuffix("+es") or other.endswith("+es")):
            pairs.append((first, second))
    return pairs


def paired_test(volume: dict[tuple[str, int], float], first: str, second: str,
                seeds: list[int]) -> str | None:
    """One table row: on the seeds both arms ran, how often ``first`` is ahead, the mean
    difference, and the p-values of the paired t-test and Wilcoxon's signed-rank test."""
    pairs = np.array([(volume[(first, s)], volume[(second, s)]) for s in seeds
                      if (first, s) in volume and (second, s) in volume])
    if len(pairs) == 0:
        return None
    difference = pairs[:, 0] - pairs[:, 1]
    t_p = w_p = "–"
    if len(pairs) > 1 and difference.any():
        t_p = f"{stats.ttest_rel(pairs[:, 0], pairs[:, 1]).pvalue:.2g}"
        w_p = f"{stats.wilcoxon(difference).pvalue:.2g}"
    return (f"| {first} | {second} | {int((difference > 0).sum())} of {len(pairs)} "
            f"| {_mean_sd(difference, 4)} | {t_p} | {w_p} |")


def report(paths: list[Path]) -> str:
    records = [{**record, "arm": arm_label(record)}
               for path in paths for record in json.loads(path.read_text())]
    arms = sorted(dict.fromkeys(r["arm"] for r in records),
                  key=lambda arm: (ARMS.index(arm.split(" ")[0]), arm))
    lines = []
    for setting in dict.fromkeys(r["setting"] for r in records):
        runs = [r for r in records if r["setting"] == setting and r["values"]]
        scale = pooled_scale(runs)
        volume = {(r["arm"], r["seed"]): _run_metrics(r, scale).learned_volume for r in runs}
        lines += [f"### {setting}", "",
                  "| arm | runs | hypervolume, learned trials: mean ± sd | networks trained per 1,000 "
                  "epochs | skipped over a limit per run | epochs spent | stopped early % of trained "
                  "| seconds per run | load average |", "|---|---|---|---|---|---|---|---|---|"]
        for arm in arms:
            mine = [r for r in records if r["setting"] == setting and r["arm"] == arm]
            if not mine:
                continue
            hv = np.array([volume.get((arm, r["seed"]), 0.0) for r in mine])
            lines.append(f"| {arm} | {len(mine)} | {_mean_sd(hv, 4)} | {_throughput(mine)} "
                         f"| {np.mean([r['epochs'] for r in mine]):.0f} | {_stopped(mine)} "
                         f"| {np.mean([r['seconds'] for r in mine]):.0f} | {_load(mine)} |")
        seeds = sorted({r["seed"] for r in records if r["setting"] == setting})
        rows = [row for first, second in compared_pairs(arms)
                if (row := paired_test(volume, first, second, seeds)) is not None]
        if rows:
            lines += ["", "| arm | against | ahead on | hypervolume difference: mean ± sd "
                      "| paired t p | Wilcoxon p |", "|---|---|---|---|---|---|", *rows]
        lines += ["", "| seed | " + " | ".join(arms) + " |", "|---|" + "---|" * len(arms)]
        for seed in seeds:
            lines.append(f"| {seed} | " + " | ".join(
                f"{volume[(arm, seed)]:.4f}" if (arm, seed) in volume else "–" for arm in arms) + " |")
        lines.append("")
    return "\n".join(lines)


def _throughput(runs: list[dict]) -> str:
    """Networks trained per 1,000 epochs, and the over-limit ones skipped per run, as two cells;
    ``–`` for records from before they were counted apart."""
    if not all("trained" in r for r in runs):
        return "– | –"
    per_k = np.array([1000 * r["trained"] / max(r["epochs"], 1) for r in runs])
    return f"{_mean_sd(per_k, 0)} | {np.mean([r['skipped'] for r in runs]):.1f}"


def _stopped(runs: list[dict]) -> str:
    """Trials stopped at a rung, in per cent of the networks trained."""
    if not all("trained" in r for r in runs):
        return "–"
    rung = [sum(not reason.startswith("over ") for reason in r["stopped"]) for r in runs]
    return _mean_sd(np.array([100 * n / max(r["trained"], 1) for n, r in zip(rung, runs)]), 0)


def _load(runs: list[dict]) -> str:
    """The 1-minute load average over the runs: lowest, mean and highest sample."""
    if not all("load_average" in r for r in runs):
        return "–"
    low, mean, high = zip(*(r["load_average"] for r in runs))
    return f"{min(low):.1f} / {np.mean(mean):.1f} / {max(high):.1f}"


def costs(models: int, seed: int) -> str:
    """Inference time and energy per inference of ``models`` sampled models, untrained and trained.

    Each untrained model is measured twice: the difference between those two measurements is the
    noise floor of the protocol on this machine, against which the untrained-vs-trained
    difference is to be read.
    """
    config = setting_config("digits", "evolution", seed)
    config = dataclasses.replace(config, measure=dataclasses.replace(config.measure, min_window_seconds=0.3))
    data = DeviceData(load_dataset(config.dataset, seed=0), torch.device("cpu"))
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=seed))
    rows = []
    while len(rows) < models:
        trial = study.ask()
        params = sample_training(trial, config.training)
        spec = sample_architecture(trial, config.space, data.input_shape).spec
        cost = profile(spec, data.input_shape, data.n_classes)
        torch.manual_seed(seed + len(rows))
        model = build_model(spec, data.input_shape, data.n_classes)
        measured = []
        for stage in ("untrained", "untrained again", "trained"):
            if stage == "trained":
                try:
                    train(model, data, params, epochs=config.training.epochs, seed=seed)
                except TrialFailure:
                    break
            fields = measure_architecture(model, config=config, data=data, profile=cost,
                                          meter=EstimateMeter(), idle_watts=0.0).fields
            measured.append((fields["inference_time_s"], fields["energy_per_inference_j"]))
        study.tell(trial, 0.0)
        if len(measured) == 3:
            rows.append(measured)
    table = np.array(rows)  # model x stage x (time, energy)
    noise = np.abs(table[:, 1] - table[:, 0]) / table[:, 0]
    trained = np.abs(table[:, 2] - table[:, 0]) / table[:, 0]
    return (f"{models} models (digits, CPU, estimate meter), median relative difference in inference "
            f"time: untrained vs untrained again (noise floor) {100 * np.median(noise[:, 0]):.1f} %, "
            f"untrained vs trained {100 * np.median(trained[:, 0]):.1f} % "
            f"(max {100 * trained[:, 0].max():.1f} %); in energy per inference "
            f"{100 * np.median(trained[:, 1]):.1f} %")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    commands = parser.add_subparsers(dest="command", required=True)
    run_parser = commands.add_parser("run")
    run_parser.add_argument("--setting", choices=SETTINGS, required=True)
    run_parser.add_argument("--arms", nargs="+", default=list(ARMS), choices=ARMS)
    run_parser.add_argument("--seeds", nargs="+", type=int, required=True,
                            help="fixed before a change; never re-run to replace a result")
    run_parser.add_argument("--out", type=Path, required=True)
    run_parser.add_argument("--set", dest="overrides", nargs="+", default=[], metavar="SECTION.KEY=VALUE",
                            help="config overrides for every arm, e.g. early_stopping.first_rung=2 "
                                 "study.max_train_epochs=240")
    run_parser.add_argument("--load", type=int, default=0, metavar="N",
                            help="N busy processes beside each run (the noise arm)")
    report_parser = commands.add_parser("report")
    report_parser.add_argument("results", nargs="+", type=Path)
    costs_parser = commands.add_parser("costs")
    costs_parser.add_argument("--models", type=int, default=24)
    costs_parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    torch.set_num_threads(1)  # one core per benchmark process on a shared machine
    optuna.logging.set_verbosity(optuna.logging.ERROR)
    warnings.simplefilter("ignore")
    if args.command == "run":
        run(args.setting, args.arms, args.seeds, args.out, parse_overrides(args.overrides), args.load)
    elif args.command == "report":
        print(report(args.results))
    else:
        print(costs(args.models, args.seed))


if __name__ == "__main__":
    main()
