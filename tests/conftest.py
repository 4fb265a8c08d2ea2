"""Shared fixtures. ``postgres``: a real, throwaway PostgreSQL server for the whole session."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.pg import PostgresServer


@pytest.fixture(scope="session")
def postgres() -> Iterator[PostgresServer]:
    """A running PostgreSQL server; fails (never skips) when it cannot be started."""
    try:
        server = PostgresServer()
        server.start()
    except (RuntimeError, OSError) as error:
        pytest.fail(f"cannot start the test PostgreSQL server: {error}", pytrace=False)
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def postgres_url(postgres: PostgresServer) -> str:
    """The URL (with password) of a new empty database on the test server."""
    return postgres.new_database()
