"""The data layer streams covers into the decode cache: same covers whether held or read twice."""
from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from genreclf.config import DataConfig
from genreclf.data import covers as C
from genreclf.data.sources import DataError


def _load(data, cache, monkeypatch, **kw):
    monkeypatch.setenv("GENRECLF_CACHE", str(cache))
    return C.load_covers(DataConfig(data=data, genres="HipHop,Rock,Pop,Electronic", cache_size=40, **kw),
                         progress=False)


def test_streamed_decode_equals_held_decode(workdir, tmp_path, monkeypatch):
    held = _load("synthetic:8", tmp_path / "a", monkeypatch)
    monkeypatch.setattr(C, "HOLD_BYTES", 1)      # hold nothing: the source is read a second time
    monkeypatch.setattr(C, "DECODE_CHUNK", 7)    # chunks that do not divide the covers
    streamed = _load("synthetic:8", tmp_path / "b", monkeypatch)
    assert streamed.digest == held.digest and streamed.report == held.report
    assert np.array_equal(streamed.images, held.images) and isinstance(streamed.images, np.memmap)
    assert len(streamed) == 32 - held.report["duplicates_dropped"]


def test_skips_and_duplicates_survive_streaming(workdir, tmp_path, monkeypatch):
    root = tmp_path / "folder"
    for g in ("Rock", "Pop"):
        (root / g).mkdir(parents=True)
        for i in range(5):
            rgb = np.random.default_rng([ord(g[0]), i]).integers(0, 256, (48, 48, 3), dtype=np.uint8)
            Image.fromarray(rgb).save(root / g / f"{i}.png")
    (root / "Rock" / "notes.txt").write_text("not a cover")
    Image.open(root / "Rock" / "0.png").save(root / "Pop" / "copy.png")
    monkeypatch.setattr(C, "HOLD_BYTES", 1)
    monkeypatch.setattr(C, "DECODE_CHUNK", 3)
    monkeypatch.setenv("GENRECLF_CACHE", str(tmp_path / "c"))
    covers = C.load_covers(DataConfig(data=str(root), genres="Rock,Pop", cache_size=32), progress=False)
    rep = covers.report
    assert rep["read"] == 12 and rep["skipped"] == 1 and "notes.txt" in rep["skipped_files"][0]["sample_id"]
    assert rep["duplicates_across_genres"] == 1 and len(covers) == 10
    assert not any(i.endswith("copy.png") for i in covers.ids)  # the later copy goes, the original stays


def test_source_changed_between_reads_is_an_error(workdir, tmp_path, monkeypatch):
    root = tmp_path / "folder"
    for g in ("Rock", "Pop"):
        (root / g).mkdir(parents=True)
        for i in range(4):
            Image.new("RGB", (8, 8), (i * 60, 10, 200 if g == "Pop" else 0)).save(root / g / f"{i}.png")
    monkeypatch.setattr(C, "HOLD_BYTES", 1)
    real_scan = C._scan

    def scan_then_edit(*args):
        out = real_scan(*args)
        Image.new("RGB", (8, 8), (1, 2, 3)).save(root / "Pop" / "2.png")  # edited between the two reads
        return out
    monkeypatch.setattr(C, "_scan", scan_then_edit)
    monkeypatch.setenv("GENRECLF_CACHE", str(tmp_path / "c"))
    with pytest.raises(DataError, match="changed while it was being read"):
        C.load_covers(DataConfig(data=str(root), genres="Rock,Pop", cache_size=32), progress=False)
    assert not list((tmp_path / "c").glob("*.tmp"))  # no half-written cache left behind
