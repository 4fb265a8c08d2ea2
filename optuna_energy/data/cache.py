"""The decoded-image cache: one uint8 tensor file per dataset split, written atomically.

Decoding CIFAR's pickles or CINIC's 180,000 PNGs takes from seconds to minutes; every later
trial and worker loads the cache file instead. A file is named after its dataset, its split
and a hash of the source (every source file's path, size and modification time, plus the
decoding settings), so an edited source gets a new file and a stale one is never read.

Writers decode into a temporary file in the cache folder and rename it into place, so a
reader sees either no file or a whole one. Workers starting together also take a lock
(where the OS has ``fcntl``), so that one decodes while the others wait and then read.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import pickle
from collections.abc import Callable, Iterable, Iterator, Mapping
from pathlib import Path
from typing import Any

import numpy as np
import torch

from optuna_energy.data.splits import DatasetError
from optuna_energy.host.files import replacing

try:
    import fcntl
except ImportError:  # Windows: the atomic rename alone keeps readers safe
    fcntl = None  # type: ignore[assignment]

FORMAT_VERSION = 1
"""Part of every hash: raising it invalidates caches written by older decoders."""

Decoded = tuple[np.ndarray, np.ndarray]


def cache_dir(configured: str | None = None) -> Path:
    """The configured folder, else ``$XDG_CACHE_HOME/optuna_energy`` or ``~/.cache/optuna_energy``.

    Raises:
        DatasetError: Neither is set and this user has no home folder (``HOME`` unset and no
            entry in the password database, as for an arbitrary user id in a container).
    """
    if configured:
        return Path(configured).expanduser()
    base = os.environ.get("XDG_CACHE_HOME")
    if not base:
        try:
            base = str(Path.home() / ".cache")
        except RuntimeError:  # Python's "Could not determine home directory."
            raise DatasetError("no folder for the dataset cache: HOME is not set and this user has no "
                               "home folder; set [dataset] cache_dir (or XDG_CACHE_HOME) to a "
                               "writable folder") from None
    return Path(base) / "optuna_energy"


def source_hash(root: Path, paths: Iterable[Path], settings: Mapping[str, Any]) -> str:
    """A hash of the files under ``paths`` (files or folders) and of the decoding settings.

    Files are identified by path relative to ``root``, size and modification time, so hashing
    stays fast (one ``stat`` per file) even for CINIC-10's 180,000 images.
    """
    digest = hashlib.sha256()
    top = os.path.abspath(root)
    meta = {"format": FORMAT_VERSION, "root": top, **settings}
    digest.update(json.dumps(meta, sort_keys=True).encode())
    prefix = len(top) + 1
    for path in paths:
        for name, stat in _stats(os.path.abspath(path)):
            digest.update(f"{name[prefix:]}\t{stat.st_size}\t{stat.st_mtime_ns}\n".encode())
    return digest.hexdigest()


def _stats(path: str) -> Iterator[tuple[str, os.stat_result]]:
    """``(path, stat)`` of every file under ``path`` in sorted order; plain strings for speed."""
    if not os.path.isdir(path):
        yield path, os.stat(path)
        return
    with os.scandir(path) as entries:
        children = sorted(entries, key=lambda entry: entry.name)
    for entry in children:
        if entry.is_dir():
            yield from _stats(entry.path)
        else:
            yield entry.path, entry.stat()


def cached_split(folder: Path, *, dataset: str, split: str, key: str,
                 decode: Callable[[], Decoded]) -> Decoded:
    """The split's ``(images, labels)`` from the cache, decoding and storing them on a miss.

    Args:
        folder: Folder of cache files; created when missing.
        dataset: Dataset name, the first part of the file name.
        split: Split name (``train``, ``test``, ...), the second part.
        key: The ``source_hash`` of what ``decode`` reads.
        decode: Reads the source; called at most once per key across concurrent workers
            (where file locks work).

    Raises:
        DatasetError: The cache folder cannot be written.
    """
    path = folder / f"{dataset}-{split}-{key[:16]}.pt"
    cached = _read(path)
    if cached is not None:
        return cached
    lock = path.with_suffix(".lock")
    try:
        folder.mkdir(parents=True, exist_ok=True)
        lock.touch()
    except OSError as error:
        raise _unwritable(folder, error) from None
    with exclusive(lock):
        cached = _read(path)  # another worker may have written it while this one waited
        if cached is not None:
            return cached
        images, labels = decode()
        try:
            _write_atomically(path, images, labels)
        except OSError as error:
            raise _unwritable(folder, error) from None
    return images, labels


def _unwritable(folder: Path, error: OSError) -> DatasetError:
    return DatasetError(f"cannot write the dataset cache in {folder} ({error}); set "
                        f"[dataset] cache_dir to a writable folder")


def _read(path: Path) -> Decoded | None:
    """The cached arrays, or ``None`` when the file is missing or unreadable (then rebuilt)."""
    try:
        content = torch.load(path, weights_only=True)
        return content["images"].numpy(), content["labels"].numpy()
    except (OSError, RuntimeError, EOFError, KeyError, TypeError, pickle.UnpicklingError):
        return None


def _write_atomically(path: Path, images: np.ndarray, labels: np.ndarray) -> None:
    with replacing(path) as draft, draft.open("wb") as file:  # a file object: see host.files
        torch.save({"images": torch.from_numpy(np.ascontiguousarray(images)),
                    "labels": torch.from_numpy(np.ascontiguousarray(labels))}, file)


@contextlib.contextmanager
def exclusive(lock_path: Path) -> Iterator[None]:
    """Hold an exclusive lock on ``lock_path`` (created when missing) across processes."""
    if fcntl is None:
        yield
        return
    with lock_path.open("a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)
