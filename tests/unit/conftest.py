"""Fixtures of the unit tests: no MLflow store, no process, no socket."""
from __future__ import annotations

import pytest


@pytest.fixture
def cover_cache(tmp_path, session_store, monkeypatch):
    """A fresh working dir and the session's shared cover cache, offline, with no MLflow store: code that
    reads covers, features or embeddings needs nothing more (``workdir`` adds a store for the tests that log)."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("GENRECLF_CACHE", str(session_store / "cache"))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    return tmp_path
