"""Shared fixtures: the PostgreSQL server for distributed tests, when one is configured."""

from __future__ import annotations

import os
import uuid

import pytest


@pytest.fixture
def postgres_url():
    """A fresh PostgreSQL database for one test, dropped afterwards.

    Reads the server URL from ``REGSTUDY_TEST_POSTGRES``. Without it the test is skipped;
    in CI (``.ci/run`` sets the variable) an unreachable server fails the test instead.
    """
    base = os.environ.get("REGSTUDY_TEST_POSTGRES")
    if not base:
        pytest.skip("REGSTUDY_TEST_POSTGRES is not set; no PostgreSQL server to test against")
    import sqlalchemy

    admin = sqlalchemy.create_engine(base, isolation_level="AUTOCOMMIT")
    name = f"regstudy_test_{uuid.uuid4().hex[:10]}"
    with admin.connect() as connection:
        connection.execute(sqlalchemy.text(f'CREATE DATABASE "{name}"'))
    try:
        yield base.rsplit("/", 1)[0] + "/" + name
    finally:
        with admin.connect() as connection:
            connection.execute(
                sqlalchemy.text(
                    "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = :n"
                ),
                {"n": name},
            )
            connection.execute(sqlalchemy.text(f'DROP DATABASE IF EXISTS "{name}"'))
        admin.dispose()
