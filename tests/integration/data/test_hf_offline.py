"""The Hugging Face source offline without a local copy: the error says how to use one (here, not in the
unit tests: the datasets library takes tens of seconds to give up)."""
from __future__ import annotations

import pytest

from genreclf.config import DataConfig
from genreclf.data.covers import load_covers
from genreclf.data.sources import DataError


def test_hf_offline_without_cache_says_how_to_use_a_local_copy(workdir, monkeypatch, tmp_path):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf"))
    with pytest.raises(DataError) as err:
        load_covers(DataConfig(data="hf:eong/20k-Album-Covers-within-20-Genres"), progress=False)
    assert "data=/path/to/" in str(err.value) and "eong/20k-Album-Covers-within-20-Genres" in str(err.value)
