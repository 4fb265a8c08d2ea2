"""Datasets read from their real on-disk formats through the real loaders.

No dataset can be downloaded here, so each test writes a small copy in the published format:
CIFAR's pickled batches (read by torchvision's own ``CIFAR10``/``CIFAR100`` with
``download=False``) and CINIC-10's class folders of PNGs (read by ``ImageFolder``).
torchvision checks every CIFAR file against the md5 of the published file; the tests replace
those expected checksums with the ones of the files they wrote, and nothing else.
"""

from __future__ import annotations

import functools
import hashlib
import http.server
import multiprocessing
import pickle
import tarfile
import threading
import time
from pathlib import Path

import numpy as np
import pytest
import torchvision
from PIL import Image

from optuna_energy.config import load_config
from optuna_energy.data import DatasetError, cache, load_dataset

CINIC_CLASSES = ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"]


def _dump(path: Path, content: dict) -> None:
    with path.open("wb") as handle:
        pickle.dump(content, handle, protocol=2)  # the published files are Python 2 pickles


def _rows(rng: np.random.Generator, count: int) -> np.ndarray:
    """``count`` CIFAR rows: 1024 red, then 1024 green, then 1024 blue bytes."""
    return rng.integers(0, 256, size=(count, 3072), dtype=np.uint8)


def write_cifar10(root: Path, *, per_batch: int = 12, test: int = 10, seed: int = 0) -> dict[str, np.ndarray]:
    folder = root / "cifar-10-batches-py"
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    written = {}
    for name in [f"data_batch_{index}" for index in range(1, 6)] + ["test_batch"]:
        rows = _rows(rng, test if name == "test_batch" else per_batch)
        labels = [index % 10 for index in range(len(rows))]
        _dump(folder / name, {"batch_label": name, "labels": labels, "data": rows,
                              "filenames": [f"{name}_{index}.png" for index in range(len(rows))]})
        written[name] = rows
    _dump(folder / "batches.meta", {"num_cases_per_batch": per_batch, "num_vis": 3072,
                                    "label_names": CINIC_CLASSES})
    return written


def write_cifar100(root: Path, *, train: int = 200, test: int = 100) -> dict[str, np.ndarray]:
    folder = root / "cifar-100-python"
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(1)
    written = {}
    for name, count in (("train", train), ("test", test)):
        rows = _rows(rng, count)
        fine = [index % 100 for index in range(count)]
        _dump(folder / name, {"filenames": [f"{index}.png" for index in range(count)],
                              "batch_label": name, "fine_labels": fine,
                              "coarse_labels": [label // 5 for label in fine], "data": rows})
        written[name] = rows
    _dump(folder / "meta", {"fine_label_names": [f"class{index}" for index in range(100)],
                            "coarse_label_names": [f"super{index}" for index in range(20)]})
    return written


def accept_written_files(monkeypatch: pytest.MonkeyPatch, cls: type, root: Path) -> None:
    """Make torchvision's integrity check expect the md5 of the files written under ``root``."""
    folder = root / cls.base_folder

    def md5(name: str) -> str:
        return hashlib.md5((folder / name).read_bytes()).hexdigest()

    monkeypatch.setattr(cls, "train_list", [[name, md5(name)] for name, _ in cls.train_list])
    monkeypatch.setattr(cls, "test_list", [[name, md5(name)] for name, _ in cls.test_list])
    monkeypatch.setattr(cls, "meta", {**cls.meta, "md5": md5(cls.meta["filename"])})


def section(name: str, root: Path, cache_dir: Path, **keys):
    return load_config({"dataset": {"name": name, "root": str(root), "cache_dir": str(cache_dir),
                                    **keys}}).dataset


@pytest.fixture
def cifar10(tmp_path, monkeypatch):
    root = tmp_path / "data"
    written = write_cifar10(root)
    accept_written_files(monkeypatch, torchvision.datasets.CIFAR10, root)
    return root, written


def test_cifar10_trains_on_the_five_batches_and_measures_on_test(cifar10, tmp_path):
    root, written = cifar10
    splits = load_dataset(section("cifar10", root, tmp_path / "cache"))
    train_rows = np.concatenate([written[f"data_batch_{index}"] for index in range(1, 6)])
    np.testing.assert_array_equal(splits.train_x, train_rows.reshape(-1, 3, 32, 32))
    np.testing.assert_array_equal(splits.eval_x, written["test_batch"].reshape(-1, 3, 32, 32))
    assert splits.train_x.dtype == np.uint8 and splits.input_shape == (3, 32, 32)
    assert splits.train_y.tolist() == [index % 10 for index in range(12)] * 5
    assert splits.n_classes == 10 and splits.eval_split.startswith("test")


def test_cifar10_validation_split_holds_out_training_images_and_never_reads_test(cifar10, tmp_path):
    root, written = cifar10
    cache_dir = tmp_path / "cache"
    splits = load_dataset(section("cifar10", root, cache_dir, eval_split="validation",
                                  validation_fraction=0.2), seed=3)
    assert (len(splits.train_y), len(splits.eval_y)) == (48, 12)
    train_rows = {row.tobytes() for row in np.concatenate([written[f"data_batch_{i}"] for i in range(1, 6)])}
    assert all(image.reshape(-1).tobytes() in train_rows for image in splits.eval_x)
    assert splits.eval_split.startswith("validation")
    assert not list(cache_dir.glob("cifar10-test-*.pt"))


def test_cifar100_uses_fine_labels(tmp_path, monkeypatch):
    root = tmp_path / "data"
    written = write_cifar100(root)
    accept_written_files(monkeypatch, torchvision.datasets.CIFAR100, root)
    splits = load_dataset(section("cifar100", root, tmp_path / "cache"))
    np.testing.assert_array_equal(splits.train_x, written["train"].reshape(-1, 3, 32, 32))
    assert splits.n_classes == 100 and sorted(set(splits.train_y.tolist())) == list(range(100))
    assert len(splits.eval_y) == 100


@pytest.mark.parametrize("name, folder", [("cifar10", "cifar-10-batches-py"), ("cifar100", "cifar-100-python")])
def test_missing_cifar_says_where_it_is_expected_and_how_to_get_it(tmp_path, name, folder):
    with pytest.raises(DatasetError) as error:
        load_dataset(section(name, tmp_path / "nowhere", tmp_path / "cache"))
    message = str(error.value)
    assert str(tmp_path / "nowhere" / folder) in message
    assert "download = true" in message and "https://www.cs.toronto.edu/~kriz/cifar.html" in message


@pytest.fixture
def web_folder(tmp_path):
    """A folder served over HTTP on localhost, standing in for the CIFAR web site."""
    folder = tmp_path / "web"
    folder.mkdir()
    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(folder))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield folder, f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


def test_download_fetches_and_extracts_through_torchvision(tmp_path, monkeypatch, web_folder):
    folder, address = web_folder
    published = tmp_path / "published"
    written = write_cifar10(published)
    accept_written_files(monkeypatch, torchvision.datasets.CIFAR10, published)
    archive = folder / "cifar-10-python.tar.gz"
    with tarfile.open(archive, "w:gz") as tar:
        tar.add(published / "cifar-10-batches-py", arcname="cifar-10-batches-py")
    monkeypatch.setattr(torchvision.datasets.CIFAR10, "url", f"{address}/{archive.name}")
    monkeypatch.setattr(torchvision.datasets.CIFAR10, "tgz_md5", hashlib.md5(archive.read_bytes()).hexdigest())
    splits = load_dataset(section("cifar10", tmp_path / "data", tmp_path / "cache", download=True))
    assert (tmp_path / "data" / "cifar-10-batches-py" / "data_batch_5").is_file()
    np.testing.assert_array_equal(splits.eval_x, written["test_batch"].reshape(-1, 3, 32, 32))


def test_failed_download_says_where_to_get_the_archive(tmp_path, monkeypatch, web_folder):
    _, address = web_folder
    monkeypatch.setattr(torchvision.datasets.CIFAR10, "url", f"{address}/cifar-10-python.tar.gz")
    with pytest.raises(DatasetError, match=r"downloading CIFAR-10 into .* failed .*; fetch "
                                           r"cifar-10-python.tar.gz from https://www.cs.toronto.edu"):
        load_dataset(section("cifar10", tmp_path / "data", tmp_path / "cache", download=True))


def test_corrupted_cifar_file_is_named(cifar10, tmp_path):
    root, _ = cifar10
    batch = root / "cifar-10-batches-py" / "data_batch_3"
    content = bytearray(batch.read_bytes())
    content[100] ^= 0xFF
    batch.write_bytes(bytes(content))
    with pytest.raises(DatasetError, match="data_batch_3 is corrupted"):
        load_dataset(section("cifar10", root, tmp_path / "cache"))


def test_cache_is_reused_without_decoding(cifar10, tmp_path, monkeypatch):
    root, _ = cifar10
    config = section("cifar10", root, tmp_path / "cache")
    first = load_dataset(config)
    assert sorted(path.name.split("-")[1] for path in (tmp_path / "cache").glob("*.pt")) == ["test", "train"]

    def no_decoding(*args, **kwargs):
        raise AssertionError("the cache should have been read instead")

    monkeypatch.setattr(torchvision.datasets.CIFAR10, "__init__", no_decoding)
    again = load_dataset(config)
    np.testing.assert_array_equal(again.train_x, first.train_x)
    np.testing.assert_array_equal(again.eval_y, first.eval_y)


def test_cache_is_invalidated_when_the_source_changes(cifar10, tmp_path, monkeypatch):
    root, _ = cifar10
    config = section("cifar10", root, tmp_path / "cache")
    before = load_dataset(config)
    rewritten = write_cifar10(root, seed=7)
    accept_written_files(monkeypatch, torchvision.datasets.CIFAR10, root)
    after = load_dataset(config)
    assert not np.array_equal(after.train_x, before.train_x)
    np.testing.assert_array_equal(after.eval_x, rewritten["test_batch"].reshape(-1, 3, 32, 32))
    assert len(list((tmp_path / "cache").glob("cifar10-train-*.pt"))) == 2


def _png(path: Path, array: np.ndarray) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(array).save(path)


def write_cinic10(root: Path, *, per_class: int = 2) -> dict[str, np.ndarray]:
    """CINIC-10's layout; ``test/`` holds an unreadable file, so reading it would fail."""
    rng = np.random.default_rng(2)
    written = {}
    for split in ("train", "valid", "test"):
        images = []
        for name in CINIC_CLASSES:
            for index in range(per_class):
                array = rng.integers(0, 256, size=(32, 32, 3), dtype=np.uint8)
                _png(root / split / name / f"cifar10-{split}-{index}.png", array)
                images.append(array.transpose(2, 0, 1))
        written[split] = np.stack(images)
    (root / "test" / "cat" / "broken.png").write_bytes(b"not a png")
    return written


def test_cinic10_trains_on_train_and_measures_on_valid(tmp_path):
    root = tmp_path / "cinic"
    written = write_cinic10(root)
    splits = load_dataset(section("cinic10", root, tmp_path / "cache"))
    np.testing.assert_array_equal(splits.train_x, written["train"])
    np.testing.assert_array_equal(splits.eval_x, written["valid"])
    assert splits.eval_y.tolist() == [label for label in range(10) for _ in range(2)]
    assert splits.eval_split.startswith("valid") and splits.n_classes == 10


def test_missing_cinic10_points_to_the_download(tmp_path):
    with pytest.raises(DatasetError) as error:
        load_dataset(section("cinic10", tmp_path / "cinic", tmp_path / "cache"))
    assert str(tmp_path / "cinic" / "train") in str(error.value)
    assert "https://doi.org/10.7488/ds/2448" in str(error.value)


def test_corrupted_image_is_named(tmp_path):
    root = tmp_path / "cinic"
    write_cinic10(root)
    broken = root / "train" / "dog" / "cifar10-train-1.png"
    broken.write_bytes(broken.read_bytes()[:40])
    with pytest.raises(DatasetError, match=f"cannot decode image {broken}"):
        load_dataset(section("cinic10", root, tmp_path / "cache"))


def test_unwritable_cache_folder_is_a_clear_error(tmp_path):
    root = tmp_path / "cinic"
    write_cinic10(root, per_class=1)
    occupied = tmp_path / "a-file"
    occupied.write_text("")
    with pytest.raises(DatasetError, match=f"cannot write the dataset cache in {occupied}.*set "
                                           r"\[dataset\] cache_dir to a writable folder"):
        load_dataset(section("cinic10", root, occupied))


def test_imagefolder_resizes_and_holds_out_a_validation_split(tmp_path):
    rng = np.random.default_rng(4)
    for name in ("cats", "dogs", "owls"):
        for index in range(10):
            height, width = rng.integers(20, 60, size=2)
            _png(tmp_path / "mine" / name / f"{index}.jpg",
                 rng.integers(0, 256, size=(height, width, 3), dtype=np.uint8))
    splits = load_dataset(section("imagefolder", tmp_path / "mine", tmp_path / "cache", image_size=16,
                                  channels=1, validation_fraction=0.3))
    assert splits.train_x.shape == (21, 1, 16, 16) and splits.eval_x.shape == (9, 1, 16, 16)
    assert splits.n_classes == 3 and sorted(np.bincount(splits.eval_y).tolist()) == [3, 3, 3]


def test_imagefolder_named_evaluation_folder_must_have_the_same_classes(tmp_path):
    rng = np.random.default_rng(5)
    for split, classes in (("train", ("a", "b")), ("val", ("a", "c"))):
        for name in classes:
            _png(tmp_path / "mine" / split / name / "0.png", rng.integers(0, 256, (8, 8, 3), dtype=np.uint8))
    config = section("imagefolder", tmp_path / "mine", tmp_path / "cache", image_size=8, eval_split="val")
    with pytest.raises(DatasetError, match=r"class folders differ .* \(only in one: b, c\)"):
        load_dataset(config)
    _png(tmp_path / "mine" / "val" / "b" / "0.png", rng.integers(0, 256, (8, 8, 3), dtype=np.uint8))
    (tmp_path / "mine" / "val" / "c" / "0.png").unlink()
    (tmp_path / "mine" / "val" / "c").rmdir()
    splits = load_dataset(config)
    assert splits.eval_y.tolist() == [0, 1] and splits.eval_split.startswith("val")


def _slow_decode(marks: str, index: int) -> cache.Decoded:
    Path(marks, f"decoded-{index}").touch()
    time.sleep(0.5)
    return np.full((4, 3, 8, 8), 7, dtype=np.uint8), np.arange(4, dtype=np.int64)


def _load_concurrently(folder: str, marks: str, index: int, results) -> None:
    images, labels = cache.cached_split(Path(folder), dataset="demo", split="train", key="k" * 64,
                                        decode=lambda: _slow_decode(marks, index))
    results.put((images.sum().item(), labels.tolist()))


def test_concurrent_workers_decode_once_and_all_read_the_whole_file(tmp_path):
    marks = tmp_path / "marks"
    marks.mkdir()
    context = multiprocessing.get_context("fork")
    results = context.Queue()
    workers = [context.Process(target=_load_concurrently, args=(str(tmp_path / "cache"), str(marks), index, results))
               for index in range(4)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join(timeout=60)
    assert [worker.exitcode for worker in workers] == [0] * 4
    assert [results.get(timeout=5) for _ in workers] == [(4 * 3 * 8 * 8 * 7, [0, 1, 2, 3])] * 4
    assert len(list(marks.iterdir())) == 1
    assert [path.name for path in (tmp_path / "cache").iterdir() if path.suffix != ".lock"] == [
        f"demo-train-{'k' * 16}.pt"]


def _rewrite(path: str, rounds: int) -> None:
    for round_ in range(rounds):
        value = round_ % 2
        cache._write_atomically(Path(path), np.full((256, 3, 32, 32), value, dtype=np.uint8),
                                np.full(256, value, dtype=np.int64))


def test_readers_never_see_a_partly_written_cache_file(tmp_path):
    path = tmp_path / "demo-train-0.pt"
    cache._write_atomically(path, np.zeros((256, 3, 32, 32), np.uint8), np.zeros(256, np.int64))
    context = multiprocessing.get_context("fork")
    writers = [context.Process(target=_rewrite, args=(str(path), 30)) for _ in range(2)]
    for writer in writers:
        writer.start()
    reads = 0
    while any(writer.is_alive() for writer in writers) or reads == 0:
        images, labels = cache._read(path)  # a torn file would read as None and fail to unpack
        assert len(images) == 256 and images.min() == images.max() == labels[0]
        reads += 1
    assert [writer.exitcode for writer in writers] == [0, 0]
    assert [p.name for p in tmp_path.iterdir()] == [path.name]  # no temporary file left behind
