"""A real MLflow tracking server on a free loopback port, backed by PostgreSQL."""

from __future__ import annotations

import pytest

from core.testing import mlflow_server as serve_mlflow


@pytest.fixture(scope="module")
def mlflow_server(postgres_databases, tmp_path_factory):
    """``mlflow server`` with a PostgreSQL backend store and served artifacts; its whole
    process group is stopped at teardown."""
    directory = tmp_path_factory.mktemp("mlflow-server")
    backend = postgres_databases.create()
    with serve_mlflow(backend, directory, workers=2) as url:
        yield url
