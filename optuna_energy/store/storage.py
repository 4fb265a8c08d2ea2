"""Storage URLs: open them with clear errors, and never show a password.

Supported URLs:

* ``sqlite:///file.db``: one machine, one or a few processes (the embedded default).
* ``postgresql://user:password@host:5432/db``: many workers; driven by psycopg 3 (plain
  ``postgresql://`` means ``postgresql+psycopg://``).
* ``mysql://user:password@host:3306/db``: MySQL or MariaDB through PyMySQL (plain ``mysql://``
  means ``mysql+pymysql://``; install ``optuna-energy[mysql]``).
* ``journal:///file.log`` (relative) or ``journal:////shared/file.log`` (absolute): Optuna's
  ``JournalFileBackend``, an append-only log on a shared filesystem, for clusters without a
  database server. Optuna 5 has no heartbeat for it.
"""

from __future__ import annotations

import contextlib
import logging
import random
import re
import time
import warnings
from pathlib import Path

import optuna

from optuna_energy.config import StorageSection
from optuna_energy.samplers._optuna_compat import storage_behind_cache

SCHEMES = ("sqlite", "postgresql", "mysql", "journal")
_DEFAULT_DRIVERS = {"postgresql": "postgresql+psycopg", "mysql": "mysql+pymysql"}
_DRIVER_PACKAGES = {"psycopg": "psycopg[binary]", "pymysql": "optuna-energy[mysql]"}

_CREATE_ATTEMPTS = 8
_logger = logging.getLogger(__name__)


class StorageError(RuntimeError):
    """A storage URL is malformed or its database cannot be reached (password masked)."""


_URL = re.compile(r"[A-Za-z][A-Za-z0-9+.\-]*://\S+")
_SECRET_QUERY = re.compile(r"([?&;][^=&;#\s]*(?:pass|pwd|secret|token)[^=&;#\s]*=)[^&;\s]*", re.IGNORECASE)
_HIDDEN_VALUE = r"\1***"
_MIN_FREE_TEXT_SECRET = 3
"""Shorter passwords are masked inside URLs, but not wherever their letters occur in a message."""
_known_secrets: set[str] = set()


def mask_url(text: str) -> str:
    """The text (a URL, or any message holding URLs) with every password replaced by ``***``.

    Masks the userinfo's password up to the *last* ``@`` (an unencoded ``@``, ``/``, ``?`` or
    ``#`` in a password must not reveal its tail), query parameters named like passwords
    (``password=``, ``sslpassword=``, ``token=``...), and every password of a storage URL this
    process has opened, wherever a message repeats it.
    """
    masked = _URL.sub(lambda match: _mask_one_url(match.group(0)), text)
    for secret in sorted(_known_secrets, key=len, reverse=True):
        masked = masked.replace(secret, "***")
    return masked


def mask_text(text: str, url: str) -> str:
    """Mask the URL's password wherever a message repeats it, also outside the URL."""
    remember_secrets(url)
    return mask_url(text)


def remember_secrets(url: str) -> None:
    """Note every form of the URL's passwords (as written, percent-decoded, as the driver reads
    them) so that any later message of this process that repeats one is masked."""
    from urllib.parse import unquote

    rest = url.split("://", 1)[-1]
    found = set()
    userinfo, at, _ = rest.rpartition("@")
    if at and ":" in userinfo:
        password = userinfo.split(":", 1)[1]
        found |= {password, unquote(password), *password.split("@")}
    query = rest.partition("?")[2]
    for raw in re.split(r"[&;]", query):
        key, _, value = raw.partition("=")
        if _SECRET_QUERY.match(f"?{key}="):
            found |= {value, unquote(value)}
    # A driver that splits the URL elsewhere than we do quotes a password's tail or middle
    # ("invalid port 'P%W@host'"): every piece between URL delimiters is a secret too.
    found |= {piece for secret in list(found) for piece in re.split(r"[@:/?#&]", secret)}
    _known_secrets.update(secret for secret in found if len(secret) >= _MIN_FREE_TEXT_SECRET)


def _mask_one_url(url: str) -> str:
    scheme, rest = url.split("://", 1)
    userinfo, at, location = rest.rpartition("@")
    if at and ":" in userinfo:
        rest = f"{userinfo.split(':', 1)[0]}:***@{location}"
    return f"{scheme}://{_SECRET_QUERY.sub(_HIDDEN_VALUE, rest)}"


def scheme_of(url: str) -> str:
    return url.split(":", 1)[0].split("+", 1)[0] if "://" in url else ""


def database_errors() -> tuple[type[BaseException], ...]:
    """Exceptions that mean "the database did not answer", worth retrying after a pause."""
    import sqlalchemy.exc

    return (sqlalchemy.exc.OperationalError, sqlalchemy.exc.InterfaceError)


def open_storage(url: str, settings: StorageSection | None = None, *,
                 create: bool = True) -> optuna.storages.BaseStorage:
    """Open an Optuna storage for a URL, creating its tables if needed.

    Args:
        url: A ``sqlite``, ``postgresql``, ``mysql`` or ``journal`` URL (see the module docs).
        settings: Heartbeat and retry settings; database storages only. ``None`` turns the
            heartbeat off.
        create: ``False`` for commands that only read: a SQLite or journal file that does not
            exist is an error instead of a new, empty database (and its folder).

    Raises:
        StorageError: Unsupported scheme, missing driver, or unreachable database; the message
            is one line and never contains the password.

    Example:
        >>> storage = open_storage("postgresql://optuna:secret@db.example.org/nas")
    """
    import sqlalchemy.exc

    remember_secrets(url)
    scheme = scheme_of(url)
    if scheme not in SCHEMES:
        raise StorageError(
            f"unsupported storage URL {mask_url(url)!r}; allowed schemes: "
            + ", ".join(f"{s}://" for s in SCHEMES)
        )
    if not create:
        _require_file(url, scheme)
    if scheme == "sqlite":
        _make_parent_directory(url)
        _refuse_foreign_sqlite(url)
    if scheme == "journal":
        return _open_journal(url)
    try:
        return _create_tables_once(url, settings)
    except ImportError as error:
        missing = error if isinstance(error, ModuleNotFoundError) else error.__cause__
        name = getattr(missing, "name", None) or "unknown"
        raise StorageError(f"cannot open storage {mask_url(url)}: the database driver {name!r} "
                           f"is not installed (pip install '{_DRIVER_PACKAGES.get(name, name)}')") from None
    except (sqlalchemy.exc.SQLAlchemyError, ValueError) as error:
        raise StorageError(f"cannot open storage {mask_url(url)}: {describe_error(error, url)}") from None
    except optuna.exceptions.StorageInternalError as error:  # its own text guesses "max length"
        raise StorageError(f"cannot write to storage {mask_url(url)}: "
                           f"{describe_error(error.__cause__ or error, url)}") from None


_OPTUNA_TABLES = frozenset({
    "alembic_version", "version_info", "studies", "study_directions", "study_user_attributes",
    "study_system_attributes", "trials", "trial_user_attributes", "trial_system_attributes",
    "trial_params", "trial_values", "trial_intermediate_values", "trial_heartbeats"})


def _refuse_foreign_sqlite(url: str) -> None:
    """A SQLite file that holds another application's tables is not a study database: Optuna
    would fail on a table name it shares (``studies``) or silently add its tables beside them.
    (Optuna's own tables, even half created by a process starting beside this one, are fine.)"""
    import sqlite3

    path = url.split(":///", 1)[-1]
    if not path or path == ":memory:" or "?" in path or not Path(path).is_file() or Path(path).stat().st_size == 0:
        return
    try:
        with contextlib.closing(sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=60)) as connection:
            tables = {row[0] for row in connection.execute(
                "SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite_%'")}
            studies = {row[1] for row in connection.execute("PRAGMA table_info(studies)")}
    except sqlite3.DatabaseError as error:
        raise StorageError(f"cannot open storage {mask_url(url)}: {path} is not a SQLite database "
                           f"({error}); give a new file or an optuna-energy database") from None
    foreign = sorted(tables - _OPTUNA_TABLES) or (["studies"] if studies and "study_name" not in studies else [])
    if foreign:
        raise StorageError(f"{path} is another application's SQLite database (tables: "
                           f"{', '.join(foreign[:5])}), not an Optuna study database; give a new file "
                           "or an optuna-energy database")


def _create_tables_once(url: str, settings: StorageSection | None) -> optuna.storages.RDBStorage:
    """Open an RDB storage; workers starting together on an empty database may race to create
    its tables, and the losers (a duplicate key or table) simply try again."""
    import sqlalchemy.exc

    attempt = 1
    while True:
        try:
            with warnings.catch_warnings():  # the heartbeat is experimental in Optuna, and chosen
                warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
                storage = _ResilientRDBStorage(_with_driver(url), engine_kwargs=_engine_kwargs(scheme_of(url)),
                                               skip_compatibility_check=True, **_heartbeat_kwargs(settings))
            _check_schema(storage)
            return storage
        except (sqlalchemy.exc.IntegrityError, sqlalchemy.exc.ProgrammingError,
                sqlalchemy.exc.OperationalError) as error:
            # SQLite says "table studies already exists" (or "database is locked") as an
            # OperationalError; an unreachable server is one too, and is not retried here.
            racing = not isinstance(error, sqlalchemy.exc.OperationalError) or any(
                text in str(error) for text in ("already exists", "database is locked"))
            if attempt == _CREATE_ATTEMPTS or not racing:
                raise
            attempt += 1
            time.sleep(random.uniform(0.2, 1.0))


def _check_schema(storage: optuna.storages.RDBStorage) -> None:
    """Optuna's own check of the tables' schema, one connection at a time: Optuna's asks for a
    second connection while holding the first, which through a pooler with as many connections as
    workers starting at once (``store.pooler``) would wait forever."""
    current, head = storage.get_current_version(), storage.get_head_version()
    if current != head:
        raise StorageError(f"the study database {mask_url(storage.url)} has Optuna's table schema "
                           f"{current}; this Optuna needs {head}: run `optuna storage upgrade "
                           "--storage URL` (or use the Optuna version that made it)")


def describe_error(error: BaseException, url: str) -> str:
    """A driver's error as one line with the URL's password masked."""
    reason = " ".join(str(getattr(error, "orig", None) or error).split())
    return mask_text(reason, url)


def _with_driver(url: str) -> str:
    scheme, rest = url.split("://", 1)
    return f"{_DEFAULT_DRIVERS.get(scheme, scheme)}://{rest}"


def _open_journal(url: str) -> optuna.storages.BaseStorage:
    from optuna.storages.journal import JournalFileBackend, JournalStorage

    path = url.split("://", 1)[1]
    if not path.startswith("/") or path == "/":
        raise StorageError(f"journal URL {url!r} needs a file: journal:///relative.log "
                           "or journal:////absolute/path.log")
    _refuse_foreign_journal(path[1:], url)
    try:
        return JournalStorage(JournalFileBackend(path[1:]))
    except OSError as error:
        raise StorageError(f"cannot open journal file {path[1:]!r}: {error.strerror}") from None


def _refuse_foreign_journal(path: str, url: str) -> None:
    """A file that is not Optuna's journal (one JSON operation per line) is refused, not parsed."""
    import json

    try:
        with open(path, "rb") as handle:
            head = handle.read(1 << 16)
    except FileNotFoundError:
        return  # a new journal
    except OSError as error:
        raise StorageError(f"cannot open journal file {path!r}: {error.strerror}") from None
    lines = head.split(b"\n")
    for line in lines[:-1] if len(lines) > 1 else lines:
        if not line.strip():
            continue
        try:
            operation = json.loads(line.decode("utf-8"))
        except (UnicodeDecodeError, ValueError):
            operation = None
        if not isinstance(operation, dict) or "op_code" not in operation:
            raise StorageError(f"{path} is not an Optuna journal file (each line of one is a JSON "
                               f"operation); {mask_url(url)} must name a new file or a journal")


def _heartbeat_kwargs(settings: StorageSection | None) -> dict:
    if settings is None or settings.heartbeat_interval == 0:
        return {}
    return {
        "heartbeat_interval": settings.heartbeat_interval,
        "grace_period": settings.grace_period,
        "heartbeat_stale_trial_callback":
            optuna.storages.RetryHeartbeatStaleTrialCallback(max_retry=settings.max_retry),
    }


def _require_file(url: str, scheme: str) -> None:
    """A read-only command's SQLite or journal file must exist: it never creates one."""
    if scheme not in ("sqlite", "journal"):
        return
    path = url.split(":///", 1)[-1].split("?", 1)[0]
    if path and path != ":memory:" and not Path(path).is_file():
        raise StorageError(f"no {scheme} database file {path!r} (from {mask_url(url)}); this command "
                           "only reads a study and never creates one: check the path or the URL")


_SQLITE_COMPANIONS = ("", "-journal", "-wal", "-shm")
"""A SQLite database's files: writing over its rollback journal or write-ahead log corrupts it too."""
_JOURNAL_COMPANIONS = ("", ".lock")
"""A journal storage's log and the lock Optuna holds beside it while appending."""


def storage_files(study: optuna.Study) -> list[Path]:
    """The files holding the study (a SQLite database and its journals, or a journal storage's
    log and lock), existing or not, for writers to refuse (``host.files``); none for a server."""
    inner = storage_behind_cache(study)
    url = getattr(inner, "url", "")
    companions: tuple[str, ...]
    if scheme_of(url) == "sqlite":
        path, companions = url.split(":///", 1)[-1].split("?", 1)[0], _SQLITE_COMPANIONS
        if not path or path == ":memory:":
            return []
    elif hasattr(inner, "_file_path"):
        path, companions = inner._file_path, _JOURNAL_COMPANIONS
    else:
        return []
    return [Path(path + suffix) for suffix in companions]


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
    connect_args: dict[str, object] = {"connect_timeout": 10}  # an unreachable host fails in seconds
    if scheme == "postgresql":
        # psycopg prepares a statement on the server after its 5th run; a pooler in transaction
        # mode (store.pooler, or a site's PgBouncer) hands the next transaction another server
        # connection, where that statement does not exist.
        connect_args["prepare_threshold"] = None
    # A worker needs two connections (its trials and their heartbeat): a small pool per process
    # keeps hundreds of workers under the server's max_connections. Servers drop idle
    # connections and restart; pre-ping and recycle replace dead ones before a query fails.
    return {"pool_size": 2, "max_overflow": 2, "pool_timeout": 60, "pool_pre_ping": True,
            "pool_recycle": 1800, "connect_args": connect_args}


class _ResilientRDBStorage(optuna.storages.RDBStorage):
    """An RDB storage whose heartbeat thread survives a database restart.

    Optuna's heartbeat thread dies at the first failed write; the trial would then look dead to
    the other workers although it is still running. Missing a beat while the server is away is
    harmless as long as it is back within the grace period.
    """

    def record_heartbeat(self, trial_id: int) -> None:
        try:
            super().record_heartbeat(trial_id)
        except database_errors() as error:
            _logger.warning("heartbeat of trial id %d not recorded: %s", trial_id,
                            describe_error(error, self.url))
