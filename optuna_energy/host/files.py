"""The one way the package writes a file: never onto a protected file, whole or not at all.

Every writer (the report, its figures and tables, exports, dashboard artifacts, the dataset
cache, the benchmarks' results) goes through :func:`replacing` or :func:`write_text`:

* a target that is a protected file (the study's database or journal, given by the caller) under
  any other name is refused: a symlink at the target or in a parent folder, ``..``, a hard link
  or a bind mount (the same device and inode);
* the content goes to a temporary file beside the target (the file a symlink points to), is
  flushed to disk and renamed over it: an error, Ctrl-C or a full disk leaves the previous file
  as it was and nothing else; a crash (a kill, a power cut) at worst a hidden ``.NAME.*.part``
  file beside it, never a partial or empty target;
* an ``OSError`` becomes an :class:`OutputError`: one line naming the path and the cause. torch's
  writers report a failing file as a ``RuntimeError``: ``torch.save`` gets a file object (the
  ``OSError`` then shows as its context), ``torch.export.save`` writes to memory first (on a
  failing file it can abort the process later).
"""

from __future__ import annotations

import contextlib
import os
import secrets
import stat
from collections.abc import Iterable, Iterator
from pathlib import Path


class OutputError(OSError):
    """A file cannot be written, or must not be: one line naming the path and why."""


def check_target(path: str | Path, *, protect: Iterable[str | Path] = ()) -> Path:
    """The file a write to ``path`` replaces (symlinks and ``..`` resolved), if it is none of
    ``protect`` under any name.

    Raises:
        OutputError: ``path`` is, or links to, a protected file.
    """
    target = Path(path).resolve()
    found = _stat(target)
    for protected in protect:
        other = _stat(Path(protected))
        same_file = found is not None and other is not None and os.path.samestat(found, other)
        if same_file or Path(protected).resolve() == target:
            raise OutputError(f"{path} is the study's own storage file {protected}; choose another path")
    return target


def _stat(path: Path) -> os.stat_result | None:
    try:
        return path.stat()
    except OSError:  # missing, or not reachable: then it is no other file either
        return None


@contextlib.contextmanager
def replacing(path: str | Path, *, protect: Iterable[str | Path] = ()) -> Iterator[Path]:
    """A temporary path beside ``path`` to write to; when the block ends without an exception,
    the file is flushed to disk and renamed over ``path`` (the file, where ``path`` is a symlink).

    The temporary file keeps the target's suffix (writers that pick a format by it still do)
    and the mode of the file it replaces. On any exception, Ctrl-C included, it is removed and
    ``path`` is left as it was.

    Raises:
        OutputError: ``path`` is a protected file under any name (checked before anything is
            written), or writing, flushing or renaming failed (a full disk, no permission).

    Example:
        >>> with replacing("model.onnx", protect=storage_files(study)) as draft:
        ...     torch.onnx.export(model, args, draft)
    """
    target = check_target(path, protect=protect)
    draft = _create_beside(target, shown=path)
    try:
        yield draft
        _flush(draft)
        os.replace(draft, target)
        _flush_folder(target.parent)
    except Exception as error:
        cause = _os_error_in(error)
        if cause is None or isinstance(error, OutputError):
            raise
        raise _cannot_write(path, cause) from error
    finally:
        draft.unlink(missing_ok=True)


def _os_error_in(error: BaseException | None) -> OSError | None:
    """The ``OSError`` behind an error: torch's writers, given a file object, raise a
    ``RuntimeError`` while handling the file's ``OSError`` (a full disk)."""
    while error is not None and not isinstance(error, OSError):
        error = error.__cause__ or error.__context__
    return error


def write_text(path: str | Path, text: str, *, protect: Iterable[str | Path] = ()) -> Path:
    """Write ``text`` (UTF-8) to ``path`` through :func:`replacing`; returns ``path``."""
    with replacing(path, protect=protect) as draft:
        draft.write_text(text, encoding="utf-8")
    return Path(path)


def _create_beside(target: Path, *, shown: str | Path) -> Path:
    """A new, empty file in the target's folder with the target's mode (or the umask's)."""
    try:
        mode = stat.S_IMODE(target.stat().st_mode)
    except FileNotFoundError:
        mode = 0o666
    except OSError as error:
        raise _cannot_write(shown, error) from error
    while True:
        draft = target.with_name(f".{target.name}.{secrets.token_hex(4)}.part{target.suffix}")
        try:
            os.close(os.open(draft, os.O_WRONLY | os.O_CREAT | os.O_EXCL, mode))
            return draft
        except FileExistsError:
            continue
        except OSError as error:
            raise _cannot_write(shown, error) from error


def _cannot_write(path: str | Path, error: OSError) -> OutputError:
    return OutputError(f"cannot write {path}: {error.strerror or error}")


def _flush(path: Path) -> None:
    """Have the file's content on disk before the rename makes it the target (a full disk can
    show only here, as ``ENOSPC`` from ``fsync``)."""
    handle = os.open(path, os.O_RDWR)
    try:
        os.fsync(handle)
    finally:
        os.close(handle)


def _flush_folder(folder: Path) -> None:
    """Have the rename itself on disk (POSIX; Windows cannot open a folder)."""
    if not hasattr(os, "O_DIRECTORY"):
        return
    handle = os.open(folder, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(handle)
    finally:
        os.close(handle)
