"""Storage URLs: open them with clear errors, and never show a password."""

from __future__ import annotations

import re
from pathlib import Path

import optuna

SCHEMES = ("sqlite", "postgresql", "mysql")


class StorageError(RuntimeError):
    """A storage URL is malformed or its database cannot be reached (password masked)."""


def mask_url(url: str) -> str:
    """The URL with its password replaced by ``***``, safe to print or log."""
    return re.sub(r"(://[^:/@]*:)[^@/]*@", r"\1***@", url)


def _mask_text(text: str, url: str) -> str:
    """Mask the URL's password wherever a driver's message repeats it."""
    match = re.search(r"://[^:/@]*:([^@/]*)@", url)
    text = text.replace(url, mask_url(url))
    if match and match.group(1):
        text = text.replace(match.group(1), "***")
    return text


def scheme_of(url: str) -> str:
    return url.split(":", 1)[0].split("+", 1)[0] if "://" in url else ""


def open_storage(url: str) -> optuna.storages.BaseStorage:
    """Open an Optuna RDB storage, creating its tables if needed.

    Raises:
        StorageError: Unsupported scheme, missing driver, or unreachable database; the message
            is one line and never contains the password.
    """
    import sqlalchemy.exc

    scheme = scheme_of(url)
    if scheme not in SCHEMES:
        raise StorageError(
            f"unsupported storage URL {mask_url(url)!r}; allowed schemes: "
            + ", ".join(f"{s}://" for s in SCHEMES)
        )
    if scheme == "sqlite":
        _make_parent_directory(url)
    try:
        return optuna.storages.RDBStorage(url, engine_kwargs=_engine_kwargs(scheme))
    except (sqlalchemy.exc.SQLAlchemyError, ImportError, ValueError) as error:
        reason = " ".join(str(getattr(error, "orig", None) or error).split())
        raise StorageError(f"cannot open storage {mask_url(url)}: {_mask_text(reason, url)}") from None


def _make_parent_directory(url: str) -> None:
    """``sqlite:///runs/a.db`` should work in a fresh checkout, as the path suggests."""
    path = url.split(":///", 1)[-1]
    if path and path != ":memory:" and "?" not in path:
        try:
            Path(path).parent.mkdir(parents=True, exist_ok=True)
        except OSError as error:
            raise StorageError(f"cannot create the directory for {url}: {error.strerror}") from None


def _engine_kwargs(scheme: str) -> dict:
    if scheme == "sqlite":
        # Several threads of one process (heartbeat, progress) share the file.
        return {"connect_args": {"timeout": 60}}
    # Servers drop idle connections; pre-ping and recycle keep long trials from failing on tell.
    return {"pool_pre_ping": True, "pool_recycle": 3600}
