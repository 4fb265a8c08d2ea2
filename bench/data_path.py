"""Training throughput: the device-resident data path versus torchvision's DataLoader.

One fixed small CNN trains on 10,000 CIFAR-format images (random pixels written as CIFAR-10's
pickled batches, read through torchvision's ``CIFAR10``) three ways:

* ``device``: ``load_dataset`` + ``DeviceData`` (uint8 on the device, randperm, normalise there);
* ``DataLoader, num_workers=0`` and ``num_workers=2``: ``CIFAR10`` with ``ToTensor`` and
  ``Normalize`` transforms, shuffled, ``pin_memory`` on CUDA.

For each it reports images per second for data alone (one epoch of batches, no model) and for
training (forward, backward, SGD step), the median of ``--repeats`` interleaved epochs. It also
times the first load of a full-size CIFAR-10 layout (decode and cache write) against a cached
load, as every later trial and worker does it.

    nice -n 10 python bench/data_path.py                 # CPU
    python bench/data_path.py --device cuda              # on a GPU machine
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import pickle
import platform
import statistics
import tempfile
import time
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import Any
from unittest import mock

import numpy as np
import torch
import torchvision
from torch import nn

from optuna_energy.config import load_config
from optuna_energy.data import DeviceData, load_dataset

BATCH_SIZE = 100


def write_cifar10(root: Path, *, train_images: int, test_images: int, signal: float = 0.0) -> None:
    """CIFAR-10's python layout: five pickled training batches, a test batch and the meta file.

    With ``signal`` 0 the pixels are noise; above 0 each image is that fraction its class's own
    fixed pattern, so networks can learn the labels (a search then behaves like a real one).
    """
    folder = root / "cifar-10-batches-py"
    folder.mkdir(parents=True)
    rng = np.random.default_rng(0)
    patterns = np.random.default_rng(1).integers(0, 256, (10, 3072)).astype(np.float32)
    sizes = {f"data_batch_{index}": train_images // 5 for index in range(1, 6)} | {"test_batch": test_images}
    for name, count in sizes.items():
        data = rng.integers(0, 256, (count, 3072), dtype=np.uint8)
        labels = rng.integers(0, 10, count)
        if signal:
            data = ((1 - signal) * data + signal * patterns[labels]).astype(np.uint8)
        content = {"batch_label": name, "data": data, "labels": labels.tolist(),
                   "filenames": [f"{index}.png" for index in range(count)]}
        with (folder / name).open("wb") as handle:
            pickle.dump(content, handle, protocol=2)
    with (folder / "batches.meta").open("wb") as handle:
        pickle.dump({"label_names": [f"class{index}" for index in range(10)]}, handle, protocol=2)


@contextlib.contextmanager
def accepting_written_checksums(root: Path) -> Iterator[None]:
    """torchvision checks the published files' md5; expect those of the files written instead."""
    cls = torchvision.datasets.CIFAR10
    folder = root / cls.base_folder

    def md5(name: str) -> str:
        return hashlib.md5((folder / name).read_bytes()).hexdigest()

    with mock.patch.multiple(cls, train_list=[[name, md5(name)] for name, _ in cls.train_list],
                             test_list=[[name, md5(name)] for name, _ in cls.test_list],
                             meta={**cls.meta, "md5": md5(cls.meta["filename"])}):
        yield


def small_cnn() -> nn.Module:
    return nn.Sequential(
        nn.Conv2d(3, 32, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
        nn.Conv2d(32, 64, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
        nn.Flatten(), nn.Linear(64 * 8 * 8, 10),
    )


Batches = Callable[[], Iterable[tuple[torch.Tensor, torch.Tensor]]]


def device_path(root: Path, cache_dir: Path, device: torch.device) -> Batches:
    config = load_config({"dataset": {"name": "cifar10", "root": str(root), "cache_dir": str(cache_dir)}})
    data = DeviceData(load_dataset(config.dataset), device)
    generator = torch.Generator(device=device).manual_seed(0)
    return lambda: data.train_batches(BATCH_SIZE, generator)


def dataloader_path(root: Path, device: torch.device, workers: int) -> Batches:
    from torchvision import transforms

    transform = transforms.Compose([transforms.ToTensor(),
                                    transforms.Normalize((0.5, 0.5, 0.5), (0.25, 0.25, 0.25))])
    dataset = torchvision.datasets.CIFAR10(str(root), train=True, transform=transform)
    loader = torch.utils.data.DataLoader(dataset, batch_size=BATCH_SIZE, shuffle=True, num_workers=workers,
                                         pin_memory=device.type == "cuda",
                                         persistent_workers=workers > 0)

    def batches() -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        for images, labels in loader:
            yield images.to(device, non_blocking=True), labels.to(device, non_blocking=True)

    return batches


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def data_epoch(batches: Batches, device: torch.device) -> float:
    """Images per second for one epoch of batches that are produced and touched, no model."""
    start, images, total = time.perf_counter(), 0, torch.zeros((), device=device)
    for x, _ in batches():
        total += x[0, 0, 0, 0]
        images += len(x)
    _sync(device)
    return images / (time.perf_counter() - start)


def train_epoch(batches: Batches, model: nn.Module, device: torch.device) -> float:
    optimizer = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)
    loss_fn = nn.CrossEntropyLoss()
    start, images = time.perf_counter(), 0
    for x, y in batches():
        optimizer.zero_grad(set_to_none=True)
        loss_fn(model(x), y).backward()
        optimizer.step()
        images += len(x)
    _sync(device)
    return images / (time.perf_counter() - start)


def time_loads(workdir: Path) -> tuple[float, float]:
    """Seconds for the first (decoding) and a cached load of a full-size CIFAR-10 layout."""
    root, cache_dir = workdir / "full", workdir / "full-cache"
    write_cifar10(root, train_images=50_000, test_images=10_000)
    config = load_config({"dataset": {"name": "cifar10", "root": str(root), "cache_dir": str(cache_dir)}})
    with accepting_written_checksums(root):
        start = time.perf_counter()
        load_dataset(config.dataset)
        first = time.perf_counter() - start
        start = time.perf_counter()
        load_dataset(config.dataset)
        return first, time.perf_counter() - start


def _first(batches: Iterable, count: int) -> Iterator:
    """The first ``count`` batches, for warm-up."""
    for index, batch in enumerate(batches):
        if index == count:
            return
        yield batch


def run(device: torch.device, *, images: int = 10_000, repeats: int = 3,
        full_layout: bool = True) -> dict[str, Any]:
    """Images per second of the three pipelines (medians), and the full-layout load times.

    ``full_layout=False`` skips writing and loading the 60,000-image layout (the dry run's
    shortcut; the pipelines are measured either way).
    """
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else platform.processor() or "cpu"
    report: dict[str, Any] = {"device": str(device), "hardware": name, "torch": torch.__version__,
                              "threads": torch.get_num_threads(), "images": images,
                              "batch_size": BATCH_SIZE, "repeats": repeats}
    with tempfile.TemporaryDirectory() as work:
        workdir = Path(work)
        if full_layout:
            report["full_layout_first_load_s"], report["full_layout_cached_load_s"] = time_loads(workdir)
        root = workdir / "bench"
        write_cifar10(root, train_images=images, test_images=1000)
        with accepting_written_checksums(root):
            pipelines = {
                "device (this package)": device_path(root, workdir / "cache", device),
                "DataLoader, num_workers=0": dataloader_path(root, device, 0),
                "DataLoader, num_workers=2": dataloader_path(root, device, 2),
            }
            rates: dict[str, dict[str, list[float]]] = {key: {"data": [], "train": []} for key in pipelines}
            torch.manual_seed(0)
            models = {key: small_cnn().to(device) for key in pipelines}
            for key, batches in pipelines.items():  # warm-up: worker start, allocator, kernels
                train_epoch(lambda batches=batches: _first(batches(), 3), models[key], device)
            for _ in range(repeats):
                for key, batches in pipelines.items():
                    rates[key]["data"].append(data_epoch(batches, device))
                    rates[key]["train"].append(train_epoch(batches, models[key], device))
    baseline = statistics.median(rates["DataLoader, num_workers=0"]["train"])
    report["pipelines"] = {
        key: {"data_images_per_s": statistics.median(measured["data"]),
              "train_images_per_s": statistics.median(measured["train"]),
              "train_vs_dataloader_nw0": statistics.median(measured["train"]) / baseline}
        for key, measured in rates.items()}
    return report


def report_markdown(report: dict[str, Any]) -> str:
    lines = [f"device {report['device']} ({report['hardware']}), torch {report['torch']}, "
             f"{report['threads']} threads, {report['images']} images, batch {report['batch_size']}, "
             f"median of {report['repeats']}"]
    if "full_layout_first_load_s" in report:
        lines.append(f"full CIFAR-10 layout (60,000 images): first load {report['full_layout_first_load_s']:.2f} s, "
                     f"cached load {report['full_layout_cached_load_s']:.2f} s")
    lines += ["", "| pipeline | data only (images/s) | training (images/s) | training vs DataLoader nw=0 |",
              "|---|---:|---:|---:|"]
    for key, rates in report["pipelines"].items():
        lines.append(f"| {key} | {rates['data_images_per_s']:,.0f} | {rates['train_images_per_s']:,.0f} | "
                     f"{rates['train_vs_dataloader_nw0']:.2f}x |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--images", type=int, default=10_000)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args(argv)
    print(report_markdown(run(torch.device(args.device), images=args.images, repeats=args.repeats)))


if __name__ == "__main__":
    main()
