"""Shared fixtures: the PostgreSQL server for distributed tests, when one is configured."""

from __future__ import annotations

import os
import uuid

import pytest


class PostgresDatabases:
    """Creates databases on the test server and drops every one of them at teardown."""

    def __init__(self, base: str) -> None:
        import sqlalchemy

        self.base = base
        self.admin = sqlalchemy.create_engine(base, isolation_level="AUTOCOMMIT")
        self.names: list[str] = []

    def create(self) -> str:
        import sqlalchemy

        name = f"regstudy_test_{uuid.uuid4().hex[:10]}"
        with self.admin.connect() as connection:
            connection.execute(sqlalchemy.text(f'CREATE DATABASE "{name}"'))
        self.names.append(name)
        return self.base.rsplit("/", 1)[0] + "/" + name

    def drop_all(self) -> None:
        import sqlalchemy

        with self.admin.connect() as connection:
            for name in self.names:
                connection.execute(
                    sqlalchemy.text(
                        "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = :n"
                    ),
                    {"n": name},
                )
                connection.execute(sqlalchemy.text(f'DROP DATABASE IF EXISTS "{name}"'))
        self.admin.dispose()


def _postgres_base() -> str:
    """The server URL from ``REGSTUDY_TEST_POSTGRES``; skip without it. In CI (``.ci/run``
    sets the variable) an unreachable server fails the test instead of skipping it."""
    base = os.environ.get("REGSTUDY_TEST_POSTGRES")
    if not base:
        pytest.skip("REGSTUDY_TEST_POSTGRES is not set; no PostgreSQL server to test against")
    return base


@pytest.fixture(scope="module")
def postgres_databases():
    """A factory of fresh PostgreSQL databases, all dropped when the module is done."""
    databases = PostgresDatabases(_postgres_base())
    try:
        yield databases
    finally:
        databases.drop_all()


@pytest.fixture
def postgres_url(postgres_databases):
    """A fresh PostgreSQL database for one test."""
    return postgres_databases.create()
