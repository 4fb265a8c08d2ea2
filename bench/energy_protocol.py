"""How well is energy per inference measured here? One command, on any machine.

    python bench/energy_protocol.py                    # device auto: the GPU if there is one
    python bench/energy_protocol.py --device cpu --repeats 10 --json energy.json

The workload is three fixed CNNs of different size (``MODELS``: small, medium, large; built
with the project's ``build_model``) each inferring 10,000 synthetic 3x32x32 images at batch
size 100 with the project's protocol (``measure_inference``: warm-up, repeated passes until the
window lasts at least ``--min-window`` seconds, device synchronised at both edges).

It measures, with the meter a study would pick (and says which):

1. idle power, and on a GPU with an energy counter also with 100 ms power sampling;
2. on a GPU with an energy counter (``nvml-counter``), for each model: the counter against
   100 ms power sampling (``nvml-power``) over the *same* windows, ``--repeats`` times;
3. for each model, the run-to-run spread of gross and net energy per inference over
   ``--repeats`` repeats.

On a CPU that is ``rapl`` where the powercap tree is readable, else the ``estimate``. Results go
to stdout as Markdown tables (and to ``--json``). Needs the package installed
(``pip install -e .``).
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import sys
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import torch

from optuna_energy.data import ArraySplits, DeviceData
from optuna_energy.host.devices import identity as gpu_id
from optuna_energy.host.devices import synchronize
from optuna_energy.host.files import write_text
from optuna_energy.host.meters import (
    EnergyMeter,
    EstimateMeter,
    GpuId,
    NvmlCounterMeter,
    NvmlPowerMeter,
    select_meter,
)
from optuna_energy.measuring.measure import (
    energy_per_inference,
    measure_idle_watts,
    measure_inference,
)
from optuna_energy.model.arch import build_model, profile

MODELS: dict[str, list[dict[str, Any]]] = {
    # About 0.2 M multiply-accumulates per image: launch overhead and copies dominate on a GPU.
    "small": [
        {"slot": 0, "kind": "conv", "out_channels": 16, "kernel": [3, 3], "stride": 2, "padding": 1},
        {"slot": 1, "kind": "activation", "fn": "relu"},
        {"slot": 2, "kind": "pool", "mode": "max", "kernel": 2, "stride": 2},
        {"slot": 16, "kind": "linear", "out_features": 64},
    ],
    # About 9 M: the network this script measured alone before it measured three.
    "medium": [
        {"slot": 0, "kind": "conv", "out_channels": 64, "kernel": [3, 3], "stride": 1, "padding": 1},
        {"slot": 1, "kind": "activation", "fn": "relu"},
        {"slot": 2, "kind": "pool", "mode": "max", "kernel": 2, "stride": 2},
        {"slot": 3, "kind": "conv", "out_channels": 128, "kernel": [3, 3], "stride": 2, "padding": 1},
        {"slot": 4, "kind": "activation", "fn": "relu"},
        {"slot": 16, "kind": "linear", "out_features": 256},
        {"slot": 17, "kind": "activation", "fn": "relu"},
    ],
    # About 100 M: compute-bound on a GPU.
    "large": [
        {"slot": 0, "kind": "conv", "out_channels": 64, "kernel": [3, 3], "stride": 1, "padding": 1},
        {"slot": 1, "kind": "activation", "fn": "relu"},
        {"slot": 2, "kind": "pool", "mode": "max", "kernel": 2, "stride": 2},
        {"slot": 3, "kind": "conv", "out_channels": 128, "kernel": [3, 3], "stride": 1, "padding": 1},
        {"slot": 4, "kind": "activation", "fn": "relu"},
        {"slot": 5, "kind": "conv", "out_channels": 256, "kernel": [3, 3], "stride": 1, "padding": 1},
        {"slot": 6, "kind": "activation", "fn": "relu"},
        {"slot": 7, "kind": "pool", "mode": "max", "kernel": 2, "stride": 2},
        {"slot": 16, "kind": "linear", "out_features": 512},
        {"slot": 17, "kind": "activation", "fn": "relu"},
    ],
}
INPUT_SHAPE = (3, 32, 32)
BATCH_SIZE = 100


def synthetic_data(device: torch.device, images: int) -> DeviceData:
    generator = np.random.default_rng(0)
    x = generator.integers(0, 256, size=(images, *INPUT_SHAPE), dtype=np.uint8)
    y = generator.integers(0, 10, size=images).astype(np.int64)
    splits = ArraySplits(name="synthetic", train_x=x[:1000], train_y=y[:1000], eval_x=x, eval_y=y,
                         n_classes=10, eval_split="synthetic")
    return DeviceData(splits, device)


def spread(values: list[float]) -> dict[str, float]:
    mean = statistics.fmean(values)
    std = statistics.stdev(values) if len(values) > 1 else 0.0
    return {"mean": mean, "std": std, "cv_percent": 100 * std / mean if mean else float("nan"),
            "min": min(values), "max": max(values)}


def counter_against_power(model: torch.nn.Module, spec: list[dict[str, Any]], data: DeviceData,
                          gpu: GpuId, *, repeats: int, min_window: float) -> list[dict[str, float]]:
    """The same windows metered by the energy counter and by 100 ms power sampling."""
    rows = []
    with NvmlCounterMeter(gpu) as counter, NvmlPowerMeter(gpu, interval_s=0.1) as power:
        for _ in range(repeats):
            synchronize(data.device)
            counter.begin_window("pair")  # waits for a counter step; power starts right after
            power.begin_window("pair")
            result = measure_inference(model, data, batch_size=BATCH_SIZE, warmup_batches=0,
                                       min_window_seconds=min_window, meter=EstimateMeter(),
                                       costs=profile(spec, INPUT_SHAPE, 10))
            counted = counter.end_window("pair")  # waits for the next step; power ends right after
            sampled = power.end_window("pair")
            rows.append({"seconds": counted.seconds, "counter_j": counted.joules,
                         "power_j": sampled.joules, "power_over_counter": sampled.joules / counted.joules,
                         "counter_mj_per_image": 1e3 * counted.joules / result.images,
                         "power_mj_per_image": 1e3 * sampled.joules / result.images})
    return rows


def protocol_spread(model: torch.nn.Module, spec: list[dict[str, Any]], data: DeviceData,
                    meter: EnergyMeter, *, idle_watts: float, repeats: int,
                    min_window: float) -> list[dict[str, float]]:
    rows = []
    for _ in range(repeats):
        result = measure_inference(model, data, batch_size=BATCH_SIZE, warmup_batches=5,
                                   min_window_seconds=min_window, meter=meter,
                                   costs=profile(spec, INPUT_SHAPE, 10))
        gross, net = energy_per_inference(result, idle_watts=idle_watts)
        rows.append({"window_s": result.window_seconds, "passes": result.passes,
                     "gross_mj_per_image": 1e3 * gross, "net_mj_per_image": 1e3 * net,
                     "ms_per_pass": 1e3 * result.seconds_per_pass})
    return rows


def markdown(rows: list[dict[str, Any]]) -> str:
    keys = list(rows[0])
    lines = ["| " + " | ".join(keys) + " |", "|" + "---|" * len(keys)]
    for row in rows:
        cells = (f"{row[key]:.4g}" if isinstance(row[key], float) else str(row[key]) for key in keys)
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def run(device: torch.device, *, gpu: GpuId | None = None, models: list[str] | None = None,
        repeats: int = 10, min_window: float = 1.0, idle_seconds: float = 5.0,
        images: int = 10_000) -> dict[str, Any]:
    """Measure idle power, then each model of ``MODELS`` (all by default); return the report.

    ``gpu`` is the GPU whose NVML meters are read; by default ``device``'s, and none on a CPU.
    Naming one while the models run on the CPU meters a stand-in ``pynvml`` (the dry run of
    ``bench/gpu``), so every step but the GPU's own arithmetic is exercised without a GPU.
    """
    if gpu is None and device.type == "cuda":
        gpu = gpu_id(device)
    torch.manual_seed(0)
    data = synthetic_data(device, images)
    with warnings.catch_warnings(record=True) as fallbacks:
        warnings.simplefilter("always")
        meter = select_meter("cuda" if gpu is not None else str(device), gpu=gpu)
    source = meter.source
    report: dict[str, Any] = {
        "device": str(device), "host": platform.node(), "energy_source": source,
        "meter_info": meter.info(), "fallbacks": [str(w.message) for w in fallbacks],
        "hardware": (meter.info().get("device_name")
                     or (torch.cuda.get_device_name(device) if device.type == "cuda" else None)
                     or platform.processor() or platform.machine()),
        "torch": torch.__version__, "min_window_s": min_window, "batch_size": BATCH_SIZE,
        "images": images, "repeats": repeats, "models": {},
    }
    try:
        report["idle_watts"] = ({source: measure_idle_watts(meter, idle_seconds)}
                                if meter.counts_hardware else {})
        if source == "nvml-counter":
            with NvmlPowerMeter(gpu) as power:
                report["idle_watts"]["nvml-power"] = measure_idle_watts(power, idle_seconds)
        for name in models or list(MODELS):
            spec = MODELS[name]
            model = build_model(spec, INPUT_SHAPE, 10).to(device)
            costs = profile(spec, INPUT_SHAPE, 10)
            measured: dict[str, Any] = {"params": costs.params, "macs": costs.macs}
            if source == "nvml-counter":
                pairs = counter_against_power(model, spec, data, gpu, repeats=repeats, min_window=min_window)
                measured["counter_vs_power"] = {"windows": pairs, "power_over_counter": spread(
                    [row["power_over_counter"] for row in pairs])}
            runs = protocol_spread(model, spec, data, meter, idle_watts=report["idle_watts"].get(source, 0.0),
                                   repeats=repeats, min_window=min_window)
            measured["protocol"] = {"runs": runs, **{key: spread([row[key] for row in runs])
                                                     for key in ("gross_mj_per_image", "net_mj_per_image",
                                                                 "ms_per_pass")}}
            report["models"][name] = measured
    finally:
        meter.close()
    return report


def report_markdown(report: dict[str, Any], *, windows: bool = True) -> str:
    """The report as Markdown; ``windows=False`` leaves out the per-window and per-run tables."""
    parts = [f"Energy protocol on {report['hardware']} ({report['device']}): energy_source = "
             f"{report['energy_source']}, {report['images']} images per pass at batch {report['batch_size']}, "
             f"windows of at least {report['min_window_s']:g} s, {report['repeats']} repeats"]
    parts += [f"> fallback: {message}" for message in report["fallbacks"]]
    if report["idle_watts"]:
        parts += ["Idle power (W), measured once per worker:", markdown([report["idle_watts"]])]
    summary = []
    for name, measured in report["models"].items():
        row: dict[str, Any] = {"model": name, "params": measured["params"], "MMACs/image": measured["macs"] / 1e6,
                               "ms/pass": measured["protocol"]["ms_per_pass"]["mean"]}
        if "counter_vs_power" in measured:
            ratio = measured["counter_vs_power"]["power_over_counter"]
            row |= {"power/counter mean": ratio["mean"], "power/counter min": ratio["min"],
                    "power/counter max": ratio["max"]}
        for kind in ("gross", "net"):
            stats = measured["protocol"][f"{kind}_mj_per_image"]
            row |= {f"{kind} mJ/image": stats["mean"], f"{kind} CV %": stats["cv_percent"]}
        summary.append(row)
    parts += ["Per model (power/counter: 100 ms power sampling over the counter, same windows; "
              "CV: coefficient of variation over the repeats):", markdown(summary)]
    if windows:
        for name, measured in report["models"].items():
            if "counter_vs_power" in measured:
                parts += [f"{name}: same windows, energy counter vs 100 ms power sampling",
                          markdown(measured["counter_vs_power"]["windows"])]
            parts += [f"{name}: run-to-run ({report['energy_source']})", markdown(measured["protocol"]["runs"])]
    return "\n\n".join(parts)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--device", default="auto", help="auto, cpu, cuda or cuda:N")
    parser.add_argument("--models", nargs="+", choices=list(MODELS), default=list(MODELS))
    parser.add_argument("--repeats", type=int, default=10)
    parser.add_argument("--min-window", type=float, default=1.0, help="seconds (the study default)")
    parser.add_argument("--idle-seconds", type=float, default=5.0)
    parser.add_argument("--images", type=int, default=10_000)
    parser.add_argument("--json", type=Path, help="also write the results here")
    args = parser.parse_args(argv)

    name = args.device if args.device != "auto" else ("cuda" if torch.cuda.is_available() else "cpu")
    report = run(torch.device(name), models=args.models, repeats=args.repeats, min_window=args.min_window,
                 idle_seconds=args.idle_seconds, images=args.images)
    print(report_markdown(report))
    if args.json:
        write_text(args.json, json.dumps(report, indent=2, default=str))
        print(f"\nwrote {args.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
