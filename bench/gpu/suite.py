"""Everything this project can prove on a GPU, in one process and one time budget.

Run through ``bench/gpu/run.sh`` (it installs the carried wheels first); by hand:

    PYTHONPATH=. python -m bench.gpu.suite --out out/gpu [--dry-run] [--budget-s 500]

Stages, in order, each recorded even when another fails:

1. ``environment``: machine, GPU, driver, CUDA, torch and package versions;
2. ``gpu_tests``: ``pytest tests/gpu`` in a subprocess (the real NVML meters, ``run_study`` on
   CUDA, export of a CUDA-trained model);
3. ``energy_protocol``: ``bench/energy_protocol.py`` for its three models (counter vs 100 ms
   sampling on the same windows, idle power, spread over 10 repeats);
4. ``data_path``: ``bench/data_path.py`` on the device (device-resident tensors vs DataLoader);
5. ``packing``: the same search with 1, 2, 4 and 8 workers on the GPU (``launch --per-gpu N``:
   training overlaps, measuring runs alone), each for an equal slice of half of what is left
   (all of it when ``search`` does not follow): trials per GPU-hour, the GPU's energy per trial,
   and the coefficient of variation of the energy per inference of one architecture measured
   by several trials at once (queued first, so the workers measure it side by side);
6. ``search``: ``studies/cifar10.toml`` on CIFAR-10 written here in the real pickled format,
   for what is left of the budget: trials per GPU-hour, the median trial split into training,
   measuring and overhead, GPU utilisation sampled by NVML in a thread, and the search's energy.

Results go to ``OUT/report.md`` (Markdown to paste into docs/BENCHMARKS.md) and
``OUT/report.json``, rewritten after every stage and every search trial, so a run cut short
still leaves what it measured. The exit status is 1 when any stage failed.

``--dry-run`` runs every stage on the CPU at toy sizes, against the stand-in ``pynvml`` of the
tests (``tests/nvml_standin.py``), and only collects ``tests/gpu``: what it proves is that the
suite itself works, so it cannot rot between the rare GPU runs.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import datetime
import importlib.metadata
import json
import os
import platform
import shlex
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import tomllib
import traceback
import xml.etree.ElementTree as ElementTree
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import optuna
import torch
from optuna.trial import FrozenTrial, TrialState

from bench import data_path, energy_protocol
from bench.core_overhead import trial_time_split
from optuna_energy.compose import suggest_training
from optuna_energy.config import load_config
from optuna_energy.data import load_dataset
from optuna_energy.host.devices import identity as gpu_id
from optuna_energy.host.files import write_text
from optuna_energy.host.gpu_share import LOCKS_ENV
from optuna_energy.host.meters import GpuId, NvmlCounterMeter
from optuna_energy.host.meters.nvml import _Session
from optuna_energy.model.space import sample_architecture
from optuna_energy.study import create_or_load_study, optimize_study

REPO = Path(__file__).resolve().parents[2]
GPU_TESTS_ENV = "OPTUNA_ENERGY_GPU_TESTS"
"""Set to 1, it makes pytest collect ``tests/gpu`` (see ``tests/gpu/conftest.py``)."""
VERSIONS = ("torch", "torchvision", "numpy", "optuna", "optuna-dashboard", "sqlalchemy", "alembic",
            "nvidia-ml-py", "onnx", "onnxscript", "onnxruntime", "scikit-learn", "pytest")
SEARCH_RESERVE_S = 90.0
"""Budget kept back when the search starts: the last trial it starts must still end in time."""


@dataclasses.dataclass(frozen=True)
class Sizes:
    """How much each stage does: the real run's, or the dry run's toy sizes."""

    protocol_images: int
    protocol_repeats: int
    protocol_window_s: float
    protocol_idle_s: float
    data_path_images: int
    data_path_repeats: int
    data_path_full_layout: bool
    search_train_images: int
    search_test_images: int
    search_max_trials: int
    search_overrides: dict[str, dict[str, Any]]
    utilisation_interval_s: float
    packing_workers: tuple[int, ...]
    packing_repeats: int
    """Trials of the one architecture whose energy spread is measured, per number of workers."""
    packing_max_trials: int


REAL = Sizes(protocol_images=10_000, protocol_repeats=10, protocol_window_s=1.0, protocol_idle_s=5.0,
             data_path_images=10_000, data_path_repeats=3, data_path_full_layout=True,
             search_train_images=50_000, search_test_images=10_000, search_max_trials=1000,
             search_overrides={}, utilisation_interval_s=0.2, packing_workers=(1, 2, 4, 8),
             packing_repeats=8, packing_max_trials=1000)
DRY = Sizes(protocol_images=20, protocol_repeats=2, protocol_window_s=0.05, protocol_idle_s=0.1,
            data_path_images=200, data_path_repeats=1, data_path_full_layout=False,
            search_train_images=250, search_test_images=100, search_max_trials=2,
            search_overrides={"training": {"epochs": 1, "batch_sizes": [64]},
                              "space": {"feature_slots": 4, "classifier_slots": 2},
                              "measure": {"min_window_seconds": 0.02, "idle_seconds": 0.1}},
            utilisation_interval_s=0.02, packing_workers=(1, 2), packing_repeats=2, packing_max_trials=2)


@dataclasses.dataclass
class Context:
    out: Path
    dry_run: bool
    device: torch.device
    gpu: GpuId | None
    """The GPU whose NVML readings are taken: the device's, or the stand-in's in a dry run."""
    sizes: Sizes
    deadline: float
    report: dict[str, Any]
    stages: tuple[str, ...] = ()
    """The stages this run runs, in order."""

    def remaining(self) -> float:
        return self.deadline - time.monotonic()

    def save(self) -> None:
        """Rewrite report.json and report.md from what has been measured so far."""
        write_text(self.out / "report.json", json.dumps(self.report, indent=2, default=str))
        write_text(self.out / "report.md", report_markdown(self.report))


# --- the stand-in NVML of the dry run -----------------------------------------------------------

@contextlib.contextmanager
def standin_nvml() -> Iterator[GpuId]:
    """Put the tests' stand-in ``pynvml`` where the meters import it; yield its powered GPU."""
    from tests.nvml_standin import FakeNvml

    fake = FakeNvml()
    previous = sys.modules.get("pynvml")
    sys.modules["pynvml"] = fake
    try:
        yield GpuId(uuid=fake.gpus[1].uuid)
    finally:
        if previous is None:
            del sys.modules["pynvml"]
        else:
            sys.modules["pynvml"] = previous


# --- stage 1: the environment --------------------------------------------------------------------

def _versions() -> dict[str, str | None]:
    found: dict[str, str | None] = {}
    for name in VERSIONS:
        try:
            found[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            found[name] = None
    return found


def _command_output(command: list[str]) -> str | None:
    try:
        return subprocess.run(command, capture_output=True, text=True, timeout=30, check=True).stdout
    except (OSError, subprocess.SubprocessError):
        return None


def _source_commit() -> str | None:
    """The commit the tree was copied from: SOURCE_COMMIT when set (a copy's own git, if any,
    may be another checkout's), else git's."""
    if os.environ.get("SOURCE_COMMIT"):
        return os.environ["SOURCE_COMMIT"]
    output = _command_output(["git", "-C", str(REPO), "rev-parse", "--short", "HEAD"])
    return output.strip() if output else None


def environment(ctx: Context) -> dict[str, Any]:
    found: dict[str, Any] = {
        "host": platform.node(), "cpus": os.cpu_count(), "python": platform.python_version(),
        "platform": platform.platform(), "commit": _source_commit(), "versions": _versions(),
        "torch_cuda": torch.version.cuda, "cudnn": torch.backends.cudnn.version(),
        "device": str(ctx.device),
    }
    if ctx.device.type == "cuda":
        properties = torch.cuda.get_device_properties(ctx.device)
        found |= {"gpu_name": properties.name, "gpu_memory_gib": properties.total_memory / 2**30,
                  "compute_capability": f"{properties.major}.{properties.minor}",
                  "multiprocessors": properties.multi_processor_count}
    if ctx.gpu is not None:
        session = _Session(ctx.gpu)
        try:
            found["nvml"] = session.info()
        finally:
            session.close()
    smi = _command_output(["nvidia-smi"])
    if smi:  # its header names the driver and the CUDA version the driver supports
        found["nvidia_smi"] = "\n".join(smi.splitlines()[:12])
    return found


# --- stage 2: pytest tests/gpu -------------------------------------------------------------------

def gpu_tests(ctx: Context) -> dict[str, Any]:
    """``tests/gpu`` in its own process: a crash there (a CUDA error) cannot end the suite."""
    junit = ctx.out / "pytest-gpu.xml"
    # xunit1: the JUnit flavour that carries the figures tests record with record_property.
    command = [sys.executable, "-m", "pytest", "tests/gpu", "-p", "no:cacheprovider", "-q",
               "-o", "junit_family=xunit1", f"--junitxml={junit}"]
    if ctx.dry_run:
        command.append("--collect-only")
    environment_ = {**os.environ, GPU_TESTS_ENV: "1"}
    started = time.monotonic()
    completed = subprocess.run(command, cwd=REPO, env=environment_, capture_output=True, text=True,
                               timeout=max(ctx.remaining() - 60, 30))
    print(completed.stdout[-20_000:], completed.stderr[-5_000:], sep="\n", flush=True)
    result: dict[str, Any] = {"command": "python " + shlex.join(command[1:]), "exit_code": completed.returncode,
                              "seconds": time.monotonic() - started}
    if ctx.dry_run:
        result["collected"] = [line for line in completed.stdout.splitlines() if "::" in line]
    elif junit.exists():  # pytest writes none when it cannot even start
        result |= junit_results(junit)
    if completed.returncode != 0:
        raise StageFailure(f"pytest tests/gpu exited with {completed.returncode}", result)
    return result


def junit_results(path: Path) -> dict[str, Any]:
    """Each test's outcome, time and recorded properties (``record_property``) from a JUnit file."""
    tests = []
    for case in ElementTree.parse(path).getroot().iter("testcase"):
        problem = next((child for child in case if child.tag in ("failure", "error", "skipped")), None)
        properties = {prop.get("name"): prop.get("value") for prop in case.iter("property")}
        tests.append({"name": case.get("name"), "outcome": "passed" if problem is None else problem.tag,
                      "message": None if problem is None else problem.get("message"),
                      "seconds": float(case.get("time", 0)), "properties": properties})
    outcomes = [test["outcome"] for test in tests]
    return {"tests": tests, "counts": {outcome: outcomes.count(outcome) for outcome in sorted(set(outcomes))}}


# --- stages 3 and 4: the existing benchmarks --------------------------------------------------------

def energy(ctx: Context) -> dict[str, Any]:
    sizes = ctx.sizes
    return energy_protocol.run(ctx.device, gpu=ctx.gpu, repeats=sizes.protocol_repeats,
                               min_window=sizes.protocol_window_s, idle_seconds=sizes.protocol_idle_s,
                               images=sizes.protocol_images)


def data(ctx: Context) -> dict[str, Any]:
    sizes = ctx.sizes
    return data_path.run(ctx.device, images=sizes.data_path_images, repeats=sizes.data_path_repeats,
                         full_layout=sizes.data_path_full_layout)


# --- stage 5: a short search with the default CIFAR-10 config --------------------------------------

class UtilisationSampler:
    """NVML's GPU utilisation, read every ``interval_s`` by a background thread.

    NVML reports the percent of its own last sample period (1/6 s to 1 s, by GPU) in which any
    kernel ran: a busy-time share, not how much of the chip the kernels used.
    """

    def __init__(self, gpu: GpuId, interval_s: float) -> None:
        self._session = _Session(gpu)
        self._interval_s = interval_s
        self.gpu_percent: list[int] = []
        self.memory_percent: list[int] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="gpu-utilisation", daemon=True)

    def _run(self) -> None:
        while not self._stop.wait(self._interval_s):
            rates = self._session.query("nvmlDeviceGetUtilizationRates")
            if rates is not None:
                self.gpu_percent.append(rates.gpu)
                self.memory_percent.append(rates.memory)

    def __enter__(self) -> UtilisationSampler:
        self._thread.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self._stop.set()
        self._thread.join()
        self._session.close()

    def summary(self) -> dict[str, Any]:
        if not self.gpu_percent:
            return {"samples": 0}
        deciles = statistics.quantiles(self.gpu_percent, n=10) if len(self.gpu_percent) > 1 else [
            self.gpu_percent[0]] * 9
        return {"samples": len(self.gpu_percent), "interval_s": self._interval_s,
                "gpu_mean_percent": statistics.fmean(self.gpu_percent),
                "gpu_median_percent": statistics.median(self.gpu_percent),
                "gpu_p10_percent": deciles[0], "gpu_p90_percent": deciles[-1],
                "idle_sample_share": sum(value == 0 for value in self.gpu_percent) / len(self.gpu_percent),
                "memory_mean_percent": statistics.fmean(self.memory_percent)}


def search_config(root: Path, workdir: Path, overrides: dict[str, dict[str, Any]], *, device: str,
                  n_trials: int, timeout: float) -> dict[str, Any]:
    """``studies/cifar10.toml`` as it is, pointed at the data written here and a throwaway database."""
    with (REPO / "studies" / "cifar10.toml").open("rb") as handle:
        config = tomllib.load(handle)
    config["study"] |= {"storage": f"sqlite:///{workdir / 'search.db'}", "n_trials": n_trials,
                        "timeout": timeout, "device": device}
    config["dataset"] |= {"root": str(root), "download": False, "cache_dir": str(workdir / "cache")}
    for section, keys in overrides.items():
        config.setdefault(section, {}).update(keys)
    return config


def written_search_config(ctx: Context, workdir: Path, *, n_trials: int,
                          timeout: float) -> tuple[Path, dict[str, Any]]:
    """CIFAR-10 written into ``workdir/data`` at the run's sizes, and the search's config for it."""
    sizes = ctx.sizes
    root = workdir / "data"
    data_path.write_cifar10(root, train_images=sizes.search_train_images,
                            test_images=sizes.search_test_images, signal=0.3)
    return root, search_config(root, workdir, sizes.search_overrides, device=str(ctx.device),
                               n_trials=n_trials, timeout=timeout)


def search_summary(trials: list[FrozenTrial], wall_s: float) -> dict[str, Any]:
    """What the search did; its rate counts from the first trial's start to the last one's end,
    so loading the data and measuring idle power once per worker are left out of it."""
    finished = [trial for trial in trials if trial.state.is_finished()]
    complete = [trial for trial in finished if trial.state == TrialState.COMPLETE]
    states = [trial.state.name for trial in finished]
    trials_s = ((max(t.datetime_complete for t in finished) - min(t.datetime_start for t in finished))
                .total_seconds() if finished else 0.0)
    summary: dict[str, Any] = {
        "wall_s": wall_s, "trials_s": trials_s, "finished_trials": len(finished), "complete_trials": len(complete),
        "states": {state: states.count(state) for state in sorted(set(states))},
        "trials_per_gpu_hour": 3600 * len(finished) / trials_s if trials_s > 0 else float("nan"),
        "learned_share": (sum(bool(trial.user_attrs.get("feasible")) for trial in complete) / len(complete)
                          if complete else float("nan")),
        "energy_sources": sorted({trial.user_attrs.get("energy_source") for trial in complete}),
    }
    if complete:
        summary["median_s"] = trial_time_split(complete)
        summary["median_params"] = statistics.median(trial.user_attrs["params"] for trial in complete)
        summary["best_accuracy"] = max(trial.user_attrs["accuracy"] for trial in complete)
    return summary


def search(ctx: Context) -> dict[str, Any]:
    sizes = ctx.sizes
    timeout = max(ctx.remaining() - SEARCH_RESERVE_S, 10.0)
    result: dict[str, Any] = {"config": "studies/cifar10.toml", "timeout_s": timeout,
                              "overrides": sizes.search_overrides,
                              "data": f"{sizes.search_train_images} training and {sizes.search_test_images} "
                                      "test images in CIFAR-10's pickled format, each 30 % its class's "
                                      "fixed pattern and 70 % noise"}
    ctx.report["stages"]["search"] = result
    with tempfile.TemporaryDirectory() as work:
        workdir = Path(work)
        root, written = written_search_config(ctx, workdir, n_trials=sizes.search_max_trials, timeout=timeout)
        config = load_config(written)
        study = create_or_load_study(config)
        start = time.monotonic()

        def after_each_trial(study: optuna.Study, trial: FrozenTrial) -> None:
            attrs = trial.user_attrs
            print(f"trial {trial.number}: {trial.state.name}, train {attrs.get('train_seconds', 0):.1f} s, "
                  f"measure {attrs.get('measure_seconds', 0):.1f} s, accuracy {attrs.get('accuracy')}, "
                  f"{attrs.get('failure_reason', '')}", flush=True)
            result["summary"] = search_summary(study.get_trials(deepcopy=False), time.monotonic() - start)
            ctx.save()

        with contextlib.ExitStack() as stack:
            stack.enter_context(data_path.accepting_written_checksums(root))
            sampler = counter = None
            if ctx.gpu is not None:
                sampler = stack.enter_context(UtilisationSampler(ctx.gpu, sizes.utilisation_interval_s))
                counter = stack.enter_context(NvmlCounterMeter(ctx.gpu))
                counter.begin_window("search")
            optimize_study(study, config, callbacks=[after_each_trial])
            wall = time.monotonic() - start
            if counter is not None:
                window = counter.end_window("search")
                result["energy"] = {"joules": window.joules, "seconds": window.seconds,
                                    "mean_watts": window.watts}
        result["summary"] = search_summary(study.get_trials(deepcopy=False), wall)
        if sampler is not None:
            result["utilisation"] = sampler.summary()
    return result


# --- stage 5: several workers per GPU ----------------------------------------------------------------

WORKER = ("import json, sys, optuna; optuna.logging.set_verbosity(optuna.logging.WARNING); "
          "from optuna_energy.config import load_config; from optuna_energy.workers import run_worker; "
          "run_worker(load_config(json.loads(sys.argv[1])))")
"""A worker as ``optuna-energy launch`` starts it, given the config as JSON (the suite's is a dict)."""


def packing(ctx: Context) -> dict[str, Any]:
    sizes = ctx.sizes
    share = 0.5 if "search" in ctx.stages[ctx.stages.index("packing"):] else 1.0
    slice_s = max(share * (ctx.remaining() - SEARCH_RESERVE_S) / len(sizes.packing_workers), 10.0)
    result: dict[str, Any] = {"config": "studies/cifar10.toml", "overrides": sizes.search_overrides,
                              "slice_s": slice_s, "repeats": sizes.packing_repeats, "per_gpu": {}}
    ctx.report["stages"]["packing"] = result
    with tempfile.TemporaryDirectory() as work:
        workdir = Path(work)
        root, base = written_search_config(ctx, workdir, n_trials=sizes.packing_max_trials, timeout=slice_s)
        with data_path.accepting_written_checksums(root):  # once here: the workers read the cache
            splits = load_dataset(load_config(base).dataset, seed=0)
        reference = _reference_params(load_config(base), splits.input_shape)
        result["reference_params"] = reference
        for workers in sizes.packing_workers:
            config = {**base, "study": {**base["study"], "name": f"packing-{workers}",
                                        "storage": f"journal:///{workdir / f'packing-{workers}.log'}"}}
            result["per_gpu"][str(workers)] = _packed_search(ctx, config, reference, workers=workers,
                                                             locks=workdir / f"locks-{workers}")
            ctx.save()
    return result


def _reference_params(config: Any, input_shape: tuple[int, int, int]) -> dict[str, Any]:
    """One architecture and its training, sampled as the objective samples them (nothing trained)."""
    trial = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=0)).ask()
    suggest_training(trial, training=config.training)
    sample_architecture(trial, config.space, input_shape)
    return trial.params


def _packed_search(ctx: Context, config: dict[str, Any], reference: dict[str, Any], *, workers: int,
                   locks: Path) -> dict[str, Any]:
    """``workers`` workers on the GPU for one slice, the reference architecture queued first."""
    study = create_or_load_study(load_config(config))
    for _ in range(ctx.sizes.packing_repeats):
        study.enqueue_trial(reference)
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(REPO), *filter(None, [os.environ.get("PYTHONPATH")])])}
    if workers > 1:
        env[LOCKS_ENV] = str(locks)
    counter = NvmlCounterMeter(ctx.gpu) if ctx.gpu is not None else None
    if counter is not None:
        counter.begin_window("packing")
    start = time.monotonic()
    processes = [subprocess.Popen([sys.executable, "-c", WORKER, json.dumps(config)], cwd=REPO, env=env)
                 for _ in range(workers)]
    codes = [process.wait(timeout=config["study"]["timeout"] + SEARCH_RESERVE_S) for process in processes]
    wall = time.monotonic() - start
    trials = study.get_trials(deepcopy=False)
    result = {"exit_codes": codes, **search_summary(trials, wall)}
    if counter is not None:
        window = counter.end_window("packing")
        counter.close()
        finished = result["finished_trials"]
        result["energy"] = {"joules": window.joules, "seconds": window.seconds, "mean_watts": window.watts,
                            "joules_per_trial": window.joules / finished if finished else float("nan")}
    repeated = [trial.user_attrs for trial in trials if trial.state == TrialState.COMPLETE
                and trial.params == reference]
    result["reference_trials"] = len(repeated)
    for field in ("energy_gross_j", "energy_per_inference_j", "inference_time_s"):
        values = [attrs[field] for attrs in repeated]
        mean = statistics.fmean(values) if values else float("nan")
        result[f"{field}_cv"] = (statistics.stdev(values) / mean if len(values) > 1 and mean > 0
                                 else float("nan"))
    result["apportioned_trials"] = sum(trial.user_attrs.get("train_energy_basis") == "apportioned"
                                       for trial in trials)
    if any(code != 0 for code in codes):
        raise StageFailure(f"a worker exited with {codes}", result)
    return result


def _packing_markdown(stage: dict[str, Any]) -> str:
    lines = [f"{stage.get('config')} with {stage.get('overrides') or 'no overrides'}, "
             f"{stage.get('slice_s', 0):.0f} s per row; one architecture queued {stage.get('repeats')} times "
             "first (its spread: CV, coefficient of variation)", "",
             "| workers per GPU | trials finished | trials per GPU-hour | J per trial (counter) | "
             "CV energy gross | CV energy objective | CV inference time |", "|---:|---:|---:|---:|---:|---:|---:|"]
    for workers, row in stage.get("per_gpu", {}).items():
        per_trial = row.get("energy", {}).get("joules_per_trial")
        lines.append(f"| {workers} | {row['finished_trials']} | {row['trials_per_gpu_hour']:.0f} | "
                     f"{_number(per_trial)} | {_number(row['energy_gross_j_cv'])} | "
                     f"{_number(row['energy_per_inference_j_cv'])} | {_number(row['inference_time_s_cv'])} |")
    return "\n".join(lines)


# --- running the stages and writing the report --------------------------------------------------------

class StageFailure(Exception):
    """A stage ended badly, with partial results worth keeping."""

    def __init__(self, message: str, partial: dict[str, Any]) -> None:
        super().__init__(message)
        self.partial = partial


STAGES: dict[str, Callable[[Context], dict[str, Any]]] = {
    "environment": environment, "gpu_tests": gpu_tests, "energy_protocol": energy,
    "data_path": data, "packing": packing, "search": search,
}


def run_stage(ctx: Context, name: str) -> bool:
    print(f"\n=== {name} ({ctx.remaining():.0f} s of the budget left) ===", flush=True)
    started = time.monotonic()
    try:
        result = STAGES[name](ctx)
        ok = True
    except Exception as error:
        traceback.print_exc()
        partial = error.partial if isinstance(error, StageFailure) else ctx.report["stages"].get(name, {})
        result = {**partial, "error": f"{type(error).__name__}: {error}"}
        ok = False
    result["stage_seconds"] = time.monotonic() - started
    ctx.report["stages"][name] = result
    ctx.save()
    print(f"=== {name}: {'ok' if ok else 'FAILED'} in {result['stage_seconds']:.1f} s ===", flush=True)
    return ok


def _number(value: Any, digits: int = 3) -> str:
    return f"{value:.{digits}g}" if isinstance(value, float) else str(value)


def report_markdown(report: dict[str, Any]) -> str:
    env = report["stages"].get("environment", {})
    nvml = env.get("nvml", {})
    versions = ", ".join(f"{name} {version}" for name, version in env.get("versions", {}).items() if version)
    machine = (f"{env['gpu_name']} ({env['gpu_memory_gib']:.0f} GiB, compute capability "
               f"{env['compute_capability']})" if "gpu_name" in env else env.get("device"))
    lines = [f"# GPU run of optuna-energy{' (DRY RUN: CPU and a stand-in pynvml)' if report['dry_run'] else ''}",
             "", f"- started: {report['started_utc']} UTC; command: `{report['command']}`",
             f"- machine: {machine}, host {env.get('host')}, {env.get('cpus')} CPUs",
             f"- driver {nvml.get('driver_version')}, power limit {nvml.get('power_limit_w')} W; "
             f"torch's CUDA {env.get('torch_cuda')}, cuDNN {env.get('cudnn')}; Python {env.get('python')}",
             f"- commit {env.get('commit')}; {versions}"]
    if "nvidia_smi" in env:
        lines += ["", "```text", env["nvidia_smi"], "```"]
    for name, stage in report["stages"].items():
        if name == "environment":
            continue
        lines += ["", f"## {name} ({stage.get('stage_seconds', 0):.0f} s)"]
        if "error" in stage:
            lines += ["", f"**FAILED**: {stage['error']}"]
        lines += ["", _STAGE_MARKDOWN[name](stage)]
    return "\n".join(lines) + "\n"


def _tests_markdown(stage: dict[str, Any]) -> str:
    lines = [f"`{stage.get('command')}`: exit {stage.get('exit_code')}"]
    if "collected" in stage:
        return "\n".join(lines + [f"collected (not run): {len(stage['collected'])} tests"])
    lines += [f"counts: {stage.get('counts')}", "", "| test | outcome | s | recorded |", "|---|---|---:|---|"]
    for test in stage.get("tests", []):
        recorded = ", ".join(f"{key} = {value}" for key, value in test["properties"].items())
        if test["message"]:
            recorded += f" {test['message'].splitlines()[0][:200]}"
        lines.append(f"| {test['name']} | {test['outcome']} | {test['seconds']:.1f} | {recorded} |")
    return "\n".join(lines)


def _search_markdown(stage: dict[str, Any]) -> str:
    summary = stage.get("summary", {})
    lines = [f"{stage.get('config')} with {stage.get('overrides') or 'no overrides'}, timeout "
             f"{stage.get('timeout_s', 0):.0f} s; data: {stage.get('data')}"]
    if summary:
        lines += ["", "| trials finished | complete | wall s (trials s) | trials per GPU-hour | learned | "
                      "best accuracy | median params | energy sources |", "|---:|---:|---:|---:|---:|---:|---:|---|",
                  f"| {summary['finished_trials']} | {summary['complete_trials']} | {summary['wall_s']:.0f} "
                  f"({summary['trials_s']:.0f}) | {summary['trials_per_gpu_hour']:.0f} | "
                  f"{_number(summary['learned_share'])} | {_number(summary.get('best_accuracy'))} | "
                  f"{summary.get('median_params', 0):,.0f} | {', '.join(map(str, summary['energy_sources']))} |"]
    median = summary.get("median_s")
    if median:
        lines += ["", "| median trial s | training s | measuring s | overhead s |", "|---:|---:|---:|---:|",
                  f"| {median['trial']:.2f} | {median['training']:.2f} | {median['measuring']:.2f} | "
                  f"{median['overhead']:.2f} |"]
    utilisation = stage.get("utilisation")
    if utilisation and utilisation.get("samples"):
        lines += ["", f"GPU utilisation (NVML, every {utilisation['interval_s']} s, {utilisation['samples']} "
                      f"samples): mean {utilisation['gpu_mean_percent']:.0f} %, median "
                      f"{utilisation['gpu_median_percent']:.0f} %, p10 {utilisation['gpu_p10_percent']:.0f} %, "
                      f"p90 {utilisation['gpu_p90_percent']:.0f} %, samples at 0 %: "
                      f"{100 * utilisation['idle_sample_share']:.0f} %; memory busy mean "
                      f"{utilisation['memory_mean_percent']:.0f} %"]
    if "energy" in stage:
        energy_ = stage["energy"]
        lines += ["", f"search energy (counter): {energy_['joules'] / 1000:.1f} kJ over {energy_['seconds']:.0f} s, "
                      f"mean {energy_['mean_watts']:.0f} W"]
    return "\n".join(lines)


_STAGE_MARKDOWN: dict[str, Callable[[dict[str, Any]], str]] = {
    "gpu_tests": _tests_markdown,
    "energy_protocol": lambda stage: energy_protocol.report_markdown(stage) if "models" in stage else "",
    "data_path": lambda stage: data_path.report_markdown(stage) if "pipelines" in stage else "",
    "packing": _packing_markdown,
    "search": _search_markdown,
}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, default=Path(os.environ.get("OUT", "out/gpu")))
    parser.add_argument("--dry-run", action="store_true", help="CPU, toy sizes, the stand-in pynvml")
    # 500 s: the lent machines stop a command at 600 s, and the last search trial, the wheel
    # install and the imports come on top of the budget.
    parser.add_argument("--budget-s", type=float, default=500.0,
                        help="seconds for all stages; the search gets what the others leave")
    parser.add_argument("--stages", nargs="+", choices=list(STAGES), default=list(STAGES))
    args = parser.parse_args(argv)
    args.out.mkdir(parents=True, exist_ok=True)
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    # run.sh passes the command as it was typed (its --out is its own addition).
    command = os.environ.get("BENCH_COMMAND") or shlex.join(["python", "-m", "bench.gpu.suite", *(
        argv if argv is not None else sys.argv[1:])])
    report = {"command": command,
              "started_utc": datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%d %H:%M"),
              "dry_run": args.dry_run, "stages": {}}
    with contextlib.ExitStack() as stack:
        if args.dry_run:
            device, gpu = torch.device("cpu"), stack.enter_context(standin_nvml())
        elif torch.cuda.is_available():
            device = torch.device("cuda")
            gpu = gpu_id(device)
        else:
            print("no CUDA GPU is visible: use --dry-run on a machine without one", file=sys.stderr)
            return 2
        ctx = Context(out=args.out, dry_run=args.dry_run, device=device, gpu=gpu,
                      sizes=DRY if args.dry_run else REAL, deadline=time.monotonic() + args.budget_s,
                      report=report, stages=tuple(dict.fromkeys(["environment", *args.stages])))
        # The environment is always recorded: every figure needs its machine and versions.
        results = [run_stage(ctx, name) for name in ctx.stages]
    print(f"\nwrote {args.out / 'report.md'} and {args.out / 'report.json'}")
    return 0 if all(results) else 1


if __name__ == "__main__":
    sys.exit(main())
