"""A connection pooler per node: PgBouncer in transaction mode between a node's workers and PostgreSQL.

Each worker keeps a few connections (its trials and its heartbeat), so 144 workers need several
hundred, and a PostgreSQL server allows 100 by default. ``pooled_storage`` starts one PgBouncer
for the node's workers: they connect to it over a Unix socket in a private folder, and it
forwards each *transaction* to one of at most ``server_connections`` connections to the
server. A worker's idle connection then costs the server nothing. Optuna numbers a trial under a
row lock on the study inside one transaction, and its heartbeat thread writes its own
transactions: both work unchanged. Server-side prepared statements do not survive transaction
pooling; ``store.storage`` turns psycopg's off for every PostgreSQL URL.
"""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import signal
import subprocess
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

from optuna_energy.config import MIN_POOLER_CONNECTIONS
from optuna_energy.store.storage import StorageError, mask_url, scheme_of

if TYPE_CHECKING:
    import sqlalchemy.engine

PGBOUNCER = "pgbouncer"
_LOG = "pgbouncer.log"
_PORT = 6432
"""Names the socket file only (``.s.PGSQL.6432``): the pooler listens on no TCP port."""
_START_SECONDS = 10.0
_STOP_SECONDS = 5.0
_MAX_CLIENTS = 2000
"""Client connections per node: a few per worker; they cost the pooler a file descriptor each."""
_UNPRIVILEGED = "nobody"
"""PgBouncer refuses to run as root; a root launcher runs it as this user."""
_PLAIN_NAME = re.compile(r"[A-Za-z0-9_.\-]+")
_PASSED_ON = {"sslmode": "server_tls_sslmode"}
"""URL query parameters the pooler applies to its connections to the server."""


@contextlib.contextmanager
def pooled_storage(url: str, *, server_connections: int) -> Iterator[str]:
    """Run PgBouncer for a PostgreSQL storage while the block runs; yield the URL to use instead.

    Args:
        url: The study's ``postgresql://user:password@host:port/db`` URL; its password is
            what the workers give the pooler and what the pooler gives the server.
        server_connections: Connections to the server the pooler opens at most (nodes ×
            this must stay below the server's ``max_connections``).

    Raises:
        StorageError: Not a PostgreSQL URL, no password in it, a query parameter the pooler
            cannot pass on, ``pgbouncer`` not installed, or it did not start.

    Example:
        >>> with pooled_storage("postgresql://optuna:pw@db:5432/nas", server_connections=4) as url:
        ...     run_workers(url)  # url: postgresql://optuna:pw@/nas?host=/tmp/...&port=6432
    """
    from sqlalchemy.engine import URL, make_url

    if scheme_of(url) != "postgresql":
        raise StorageError(f"the pooler {PGBOUNCER} serves postgresql:// storages only, got {mask_url(url)}")
    target = make_url(url)
    if not target.password or not target.username:
        raise StorageError(f"the pooler needs the user and password in the storage URL ({mask_url(url)}); "
                           "it cannot read ~/.pgpass")
    unknown = sorted(set(target.query) - set(_PASSED_ON))
    if unknown:
        raise StorageError(f"the pooler cannot pass on the URL parameter(s) {', '.join(unknown)} of "
                           f"{mask_url(url)}; allowed: {', '.join(_PASSED_ON)}")
    if server_connections < MIN_POOLER_CONNECTIONS:
        raise StorageError(f"the pooler needs at least {MIN_POOLER_CONNECTIONS} server connections "
                           f"(Optuna creates a study's tables over two at once), got {server_connections}")
    program = _pgbouncer()
    with tempfile.TemporaryDirectory(prefix="optuna-energy-pooler-") as folder:
        os.chmod(folder, 0o700)  # the socket and the password file: the launching user's only
        ini = _write_config(Path(folder), target, server_connections=server_connections)
        process = _start(program, ini, Path(folder))
        try:
            yield URL.create(target.drivername, username=target.username, password=target.password,
                             database=target.database, query={"host": folder, "port": str(_PORT)}
                             ).render_as_string(hide_password=False)
        finally:
            _stop(process)


def _pgbouncer() -> str:
    """PgBouncer's executable: on the PATH, or where Debian and Red Hat install it."""
    found = shutil.which(PGBOUNCER) or shutil.which(PGBOUNCER, path="/usr/sbin:/usr/bin")
    if found is None:
        raise StorageError(f"--pooler {PGBOUNCER}: the program {PGBOUNCER!r} is not installed "
                           "(apt-get install pgbouncer, or your site's module); or leave out --pooler")
    return found


def _write_config(folder: Path, target: sqlalchemy.engine.URL, *, server_connections: int) -> Path:
    """The pooler's settings and its one user, in the private folder."""
    server = {"host": target.host or "localhost", "port": str(target.port or 5432),
              "dbname": target.database or target.username or ""}
    tls = "".join(f"{_PASSED_ON[key]} = {value}\n" for key, value in target.query.items())
    (folder / "userlist.txt").write_text(f"{_quoted(target.username or '')} {_quoted(str(target.password))}\n")
    ini = folder / "pgbouncer.ini"
    ini.write_text(
        "[databases]\n"
        f"{_database_name(server['dbname'])} = " + " ".join(f"{key}={_libpq(value)}" for key, value in server.items())
        + "\n[pgbouncer]\n"
        "listen_addr =\n"
        f"listen_port = {_PORT}\n"
        f"unix_socket_dir = {folder}\n"
        "auth_type = scram-sha-256\n"
        f"auth_file = {folder / 'userlist.txt'}\n"
        "pool_mode = transaction\n"
        f"default_pool_size = {server_connections}\n"
        f"max_db_connections = {server_connections}\n"
        "reserve_pool_size = 0\n"
        f"max_client_conn = {_MAX_CLIENTS}\n"
        "server_login_retry = 2\n"
        # A worker's driver may send these at connect; the pooler drops them instead of refusing.
        "ignore_startup_parameters = extra_float_digits,options\n"
        + tls)
    for path in folder.iterdir():
        path.chmod(0o600)
    return ini


def _database_name(name: str) -> str:
    """The database's name as the pooler's key, which its configuration file cannot quote."""
    if not _PLAIN_NAME.fullmatch(name):
        raise StorageError(f"the pooler cannot serve the database name {name!r}; allowed: letters, "
                           "digits, '_', '-' and '.'")
    return name


def _quoted(text: str) -> str:
    """A name or password in PgBouncer's own quotes (a quote inside is written twice)."""
    return '"' + text.replace('"', '""') + '"'


def _libpq(value: str) -> str:
    """A value of a libpq connection string, in single quotes."""
    return "'" + value.replace("\\", "\\\\").replace("'", "\\'") + "'"


def _start(program: str, ini: Path, folder: Path) -> subprocess.Popen:
    command = [program, str(ini)]
    if os.geteuid() == 0:
        shutil.chown(folder, _UNPRIVILEGED)
        for path in folder.iterdir():
            shutil.chown(path, _UNPRIVILEGED)
        command[1:1] = ["-u", _UNPRIVILEGED]
    # Slurm's scancel and time limit send SIGTERM to every process of the job, and PgBouncer
    # takes it as an immediate exit; the workers stopped by the same signal still need it for a
    # moment to end their trials and queue them again. So it starts with SIGTERM blocked (the
    # mask is inherited), stops on SIGINT from here, and Slurm's SIGKILL at KillWait ends it.
    unblocked = signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGTERM})
    try:
        with open(folder / _LOG, "ab") as log:  # its log lines, and why it did not start
            process = subprocess.Popen(command, stdout=log, stderr=log,
                                       start_new_session=True)  # Ctrl-C in a terminal: the launcher's
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, unblocked)
    socket = folder / f".s.PGSQL.{_PORT}"
    deadline = time.monotonic() + _START_SECONDS
    while not socket.exists():
        if process.poll() is not None or time.monotonic() > deadline:
            _stop(process)
            raise StorageError(f"the pooler {PGBOUNCER} did not start: {_last_line(folder / _LOG)}")
        time.sleep(0.05)
    return process


def _stop(process: subprocess.Popen) -> None:
    if process.poll() is None:
        process.send_signal(signal.SIGINT)  # its clients are gone: it exits at once
        try:
            process.wait(timeout=_STOP_SECONDS)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def _last_line(log: Path) -> str:
    lines = log.read_text(errors="replace").splitlines() if log.exists() else []
    return lines[-1] if lines else "no log written"
