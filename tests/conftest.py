"""Fixtures of more than one scope (unit, integration, e2e): the session's shared cover cache, and a working
dir with its own real MLflow store for the integration and end-to-end tests."""
from __future__ import annotations

import pytest
from helpers import OUTPUT, isolated_store


@pytest.fixture(scope="session")
def session_store(tmp_path_factory):
    """One SQLite MLflow store + cover cache shared by the tests of a session (like a user's)."""
    return tmp_path_factory.mktemp("store")


@pytest.fixture
def workdir(tmp_path, session_store):
    """A fresh working dir with its own MLflow store (SQLite + ./mlruns) and a shared cover cache."""
    with isolated_store(tmp_path, session_store / "cache"):
        yield tmp_path


def pytest_configure(config):
    OUTPUT.mkdir(exist_ok=True)
