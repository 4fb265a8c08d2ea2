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
from typing import Any

import optuna
from optuna.storages.journal import JournalFileBackend

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


_FAULTS = (
    (re.compile(r"database disk image is malformed|file is not a database"),
     "is damaged ({reason}): restore it from a backup (sqlite3's .recover command may save its trials)"),
    (re.compile(r"no such table: (\w+)|relation \"(\w+)\" does not exist"),
     "lacks Optuna's table {table} ({reason}): it was damaged or edited; restore it from a backup"),
    (re.compile(r"database or disk is full|No space left on device|Disk quota exceeded"),
     "has no space left ({reason}): free some disk space, then run the same command again "
     "(finished trials are stored)"),
    (re.compile(r"readonly database|read-only|read only"),
     "refuses writes ({reason}): make it writable (report, export and dashboard only read)"),
)
"""What a driver's (or the file system's) words mean for the study's database, and what to do."""


def storage_fault(error: BaseException) -> StorageError | None:
    """The one-line ``StorageError`` for a database that is damaged, incomplete, full or read-only,
    if ``error`` or any error behind it says so; ``None`` for every other error.

    Waiting does not mend any of these: a command stops on them (exit 2), where it would retry a
    database that merely stopped answering.
    """
    import sqlite3

    import sqlalchemy.exc

    # Only the database's own errors: a full disk under an exported model is not the database's.
    from_storage = (sqlalchemy.exc.SQLAlchemyError, sqlite3.Error, optuna.exceptions.StorageInternalError)
    seen: BaseException | None = error
    while seen is not None:
        fault = _fault_of(str(getattr(seen, "orig", None) or seen)) if isinstance(seen, from_storage) else None
        if fault is not None:
            return fault
        seen = seen.__cause__ or seen.__context__
    return None


def _fault_of(reason: str) -> StorageError | None:
    reason = " ".join(reason.split("[SQL:", 1)[0].split())
    for pattern, advice in _FAULTS:
        found = pattern.search(reason)
        if found:
            table = next((group for group in found.groups() if group), "")
            return StorageError(mask_url("the study's database " + advice.format(reason=reason, table=table)))
    return None


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
    _refuse_raw_delimiters(url)
    if not create:
        _require_file(url, scheme)
    if scheme == "sqlite":
        _make_parent_directory(url)
        _refuse_foreign_sqlite(url)
    if scheme == "journal":
        return _open_journal(url)
    try:
        storage = _create_tables_once(url, settings)
        if create:  # commands that only read leave the database as it is
            _index_trial_states(storage)
        return storage
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


def _refuse_raw_delimiters(url: str) -> None:
    """A raw ``@`` in a password, or ``/`` in a user name, splits the URL elsewhere than meant: the
    driver reads a piece of the password as the host or the port ("invalid literal for int() with
    base 10"). (A user name may hold ``@``, as Azure's ``user@server`` do.)"""
    authority = url.split("://", 1)[1].split("?", 1)[0]
    userinfo, at, _ = authority.rpartition("@")
    user, _, password = userinfo.partition(":")
    if at and ("@" in password or "/" in user):
        raise StorageError(f"the user name or password in {mask_url(url)} holds a raw '@' or '/', which "
                           "ends that part of a URL: percent-encode them (@ as %40, / as %2F, : as %3A, "
                           "% as %25), e.g. python -c \"import urllib.parse; print(urllib.parse.quote("
                           "input(), safe=''))\"")


_OPTUNA_TABLES = frozenset({
    "alembic_version", "version_info", "studies", "study_directions", "study_user_attributes",
    "study_system_attributes", "trials", "trial_user_attributes", "trial_system_attributes",
    "trial_params", "trial_values", "trial_intermediate_values", "trial_heartbeats"})
_CORE_TABLES = frozenset({
    "version_info", "studies", "study_user_attributes", "study_system_attributes", "trials",
    "trial_user_attributes", "trial_system_attributes", "trial_params", "trial_values"})
"""Tables of every Optuna schema since 0.9: a study database without one of them is damaged."""


def _refuse_foreign_sqlite(url: str) -> None:
    """A SQLite file that holds another application's tables is not a study database: Optuna
    would fail on a table name it shares (``studies``) or silently add its tables beside them.
    (Optuna's own tables, even half created by a process starting beside this one, are fine.)"""
    import sqlite3

    path = url.split(":///", 1)[-1]
    if not path or path == ":memory:" or "?" in path or not Path(path).is_file() or Path(path).stat().st_size == 0:
        return
    try:
        tables, studies = _tables_of(path, mode="ro")
    except sqlite3.DatabaseError as error:
        if getattr(error, "sqlite_errorname", "") != "SQLITE_READONLY_ROLLBACK":
            raise StorageError(f"cannot open storage {mask_url(url)}: {path} is not a SQLite database "
                               f"({error}); give a new file or an optuna-energy database") from None
        # A journal beside the file (a crash's, or garbage): only a writer may roll it back or
        # discard it, as SQLite does on every writer's first read.
        try:
            tables, studies = _tables_of(path, mode="rw")
        except sqlite3.DatabaseError as error:
            raise StorageError(f"cannot open storage {mask_url(url)}: {path}-journal, the rollback journal "
                               f"beside it, cannot be rolled back ({error}); make the folder writable, or "
                               f"move the journal away if the database is a copy") from None
    foreign = sorted(tables - _OPTUNA_TABLES) or (["studies"] if studies and "study_name" not in studies else [])
    if foreign:
        raise StorageError(f"{path} is another application's SQLite database (tables: "
                           f"{', '.join(foreign[:5])}), not an Optuna study database; give a new file "
                           "or an optuna-energy database")
    missing = sorted(_CORE_TABLES - tables)
    if "alembic_version" in tables and missing:  # stamped after all tables: none was half created
        raise StorageError(f"the study's database {path} lacks Optuna's table {', '.join(missing)}: it was "
                           "damaged or edited; restore it from a backup (Optuna would recreate it empty)")


def _tables_of(path: str, *, mode: str) -> tuple[set[str], set[str]]:
    """A SQLite file's table names and the columns of its ``studies`` table."""
    import sqlite3

    with contextlib.closing(sqlite3.connect(f"file:{path}?mode={mode}", uri=True, timeout=60)) as connection:
        tables = {row[0] for row in connection.execute(
            "SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite_%'")}
        studies = {row[1] for row in connection.execute("PRAGMA table_info(studies)")}
    return tables, studies


def _create_tables_once(url: str, settings: StorageSection | None) -> optuna.storages.RDBStorage:
    """Open an RDB storage; workers starting together on an empty database may race to create
    its tables, and the losers (a duplicate key or table) simply try again."""
    import sqlalchemy.exc

    _one_line_query_retries()
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


TRIAL_STATE_INDEX = "ix_trials_study_id_state"
"""An index of the package's own on Optuna's trials table. Optuna indexes trials by study only, so
asking for a study's waiting trials (every ``ask``) or running ones (recovery) reads every trial
the study has: a cost per trial that grows with the study. Other Optuna code ignores the index."""


def _index_trial_states(storage: optuna.storages.RDBStorage) -> None:
    """Create :data:`TRIAL_STATE_INDEX` once (a no-op when it exists or another worker made it)."""
    import sqlalchemy

    with storage.engine.begin() as connection:
        if TRIAL_STATE_INDEX in {index["name"] for index in sqlalchemy.inspect(connection).get_indexes("trials")}:
            return
        trials = sqlalchemy.Table("trials", sqlalchemy.MetaData(), autoload_with=connection)
        sqlalchemy.Index(TRIAL_STATE_INDEX, trials.c.study_id, trials.c.state).create(connection, checkfirst=True)


class _OneLineQueryRetry(logging.Filter):
    """Optuna's warning when a query fails and it tries a slower one (after a lost connection,
    mostly) holds the driver's whole error, SQL and parameters included: one line instead."""

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        if message.startswith("Caught an error from sqlalchemy: "):
            reason = " ".join(message.removeprefix("Caught an error from sqlalchemy: ").split("[SQL:", 1)[0].split())
            record.msg, record.args = f"a database query failed, trying a slower one: {reason}", None
        return True


def _one_line_query_retries() -> None:
    logger = logging.getLogger("optuna.storages._rdb.storage")
    if not any(isinstance(existing, _OneLineQueryRetry) for existing in logger.filters):
        logger.addFilter(_OneLineQueryRetry())


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


class _JournalFile(JournalFileBackend):
    """Optuna's journal file, whose failed appends (a full disk, a read-only mount) are one line."""

    def __init__(self, path: str) -> None:
        super().__init__(path)
        self.path = path

    def append_logs(self, logs: list[dict[str, Any]]) -> None:
        try:
            super().append_logs(logs)
        except OSError as error:
            reason = f"{self.path}: {error.strerror}"
            raise _fault_of(reason) or StorageError(f"cannot write journal file {reason}") from None


def _open_journal(url: str) -> optuna.storages.BaseStorage:
    from optuna.storages.journal import JournalStorage

    path = url.split("://", 1)[1]
    if not path.startswith("/") or path == "/":
        raise StorageError(f"journal URL {url!r} needs a file: journal:///relative.log "
                           "or journal:////absolute/path.log")
    _refuse_foreign_journal(path[1:], url)
    try:
        return JournalStorage(_JournalFile(path[1:]))
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

    Optuna's heartbeat thread dies at the first failed write (a traceback on standard error); the
    trial would then look dead to the other workers although it is still running. Missing a beat
    while the server is away is harmless as long as it is back within the grace period.
    """

    def record_heartbeat(self, trial_id: int) -> None:
        try:
            super().record_heartbeat(trial_id)
        except database_errors() + (optuna.exceptions.StorageInternalError,) as error:
            # Optuna wraps a lost connection in its "exceeding max length" guess: say the cause.
            _logger.warning("heartbeat of trial id %d not recorded: %s", trial_id,
                            describe_error(error.__cause__ or error, self.url))
