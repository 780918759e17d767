"""The data layer streams covers through disk spools into the decode cache: same covers whatever the chunking."""
from __future__ import annotations

import numpy as np
from PIL import Image

from genreclf.config import DataConfig
from genreclf.data import covers as C
from genreclf.data import spool


def _load(data, cache, monkeypatch, **kw):
    monkeypatch.setenv("GENRECLF_CACHE", str(cache))
    return C.load_covers(DataConfig(data=data, genres="HipHop,Rock,Pop,Electronic", cache_size=40, **kw),
                         progress=False)


def test_chunked_streaming_equals_one_chunk(cover_cache, tmp_path, monkeypatch):
    held = _load("synthetic:8", tmp_path / "a", monkeypatch)
    monkeypatch.setattr(C, "DECODE_CHUNK", 7)    # chunks that do not divide the covers
    monkeypatch.setattr(spool, "CHUNK", 5)       # metadata spooled (and digested, sorted) 5 records at a time
    streamed = _load("synthetic:8", tmp_path / "b", monkeypatch)
    assert streamed.digest == held.digest and streamed.report == held.report
    assert np.array_equal(streamed.images, held.images) and isinstance(streamed.images, np.memmap)
    for name in ("ids", "labels", "content", "split"):
        assert np.array_equal(getattr(streamed, name), getattr(held, name)), name
    assert len(streamed) == 32 - held.report["duplicates_dropped"]


def test_skips_and_duplicates_survive_streaming(cover_cache, tmp_path, monkeypatch):
    root = tmp_path / "folder"
    for g in ("Rock", "Pop"):
        (root / g).mkdir(parents=True)
        for i in range(5):
            rgb = np.random.default_rng([ord(g[0]), i]).integers(0, 256, (48, 48, 3), dtype=np.uint8)
            Image.fromarray(rgb).save(root / g / f"{i}.png")
    (root / "Rock" / "notes.txt").write_text("not a cover")
    Image.open(root / "Rock" / "0.png").save(root / "Pop" / "copy.png")
    monkeypatch.setattr(spool, "CHUNK", 4)
    monkeypatch.setattr(C, "DECODE_CHUNK", 3)
    monkeypatch.setenv("GENRECLF_CACHE", str(tmp_path / "c"))
    covers = C.load_covers(DataConfig(data=str(root), genres="Rock,Pop", cache_size=32), progress=False)
    rep = covers.report
    assert rep["read"] == 12 and rep["skipped"] == 1 and "notes.txt" in rep["skipped_files"][0]["sample_id"]
    assert rep["duplicates_across_genres"] == 1 and len(covers) == 10
    assert not any(i.endswith("copy.png") for i in covers.ids)  # the later copy goes, the original stays


def test_decodes_the_bytes_it_digested_even_if_the_source_changes(cover_cache, tmp_path, monkeypatch):
    """The source is read once: covers are decoded from the spool, never from a second read that
    could differ from what was digested (an edit during the run shows in the next run, not this one)."""
    root = tmp_path / "folder"
    for g in ("Rock", "Pop"):
        (root / g).mkdir(parents=True)
        for i in range(4):
            Image.new("RGB", (8, 8), (i * 60, 10, 200 if g == "Pop" else 0)).save(root / g / f"{i}.png")
    cfg = DataConfig(data=str(root), genres="Rock,Pop", cache_size=32, dedup_distance=-1)
    monkeypatch.setenv("GENRECLF_CACHE", str(tmp_path / "clean"))
    clean = C.load_covers(cfg, progress=False)
    real_scan = C._scan

    def scan_then_edit(*args):
        out = real_scan(*args)
        Image.new("RGB", (8, 8), (1, 2, 3)).save(root / "Pop" / "2.png")  # edited once it was read
        return out
    monkeypatch.setattr(C, "_scan", scan_then_edit)
    monkeypatch.setenv("GENRECLF_CACHE", str(tmp_path / "c"))
    during = C.load_covers(cfg, progress=False)
    assert during.digest == clean.digest and np.array_equal(during.images, clean.images)
    monkeypatch.setattr(C, "_scan", real_scan)
    after = C.load_covers(cfg, progress=False)
    assert after.digest != clean.digest and not np.array_equal(after.images, clean.images)
    assert not list((tmp_path / "c").glob("*.tmp")) and not list((tmp_path / "c").glob(".spool-*"))


def test_damaged_hash_file_is_detected_and_rebuilt(cover_cache, tmp_path, monkeypatch, caplog):
    first = _load("synthetic:4", tmp_path / "c", monkeypatch, dedup_distance=0)
    (hashes,) = (tmp_path / "c").glob("phash-*.npy")
    good = np.load(hashes).copy()
    arr = np.load(hashes, mmap_mode="r+")
    arr[:] = 0  # all covers one hash: de-dup would keep one cover per run of the cache
    arr.flush()
    again = _load("synthetic:4", tmp_path / "c", monkeypatch, dedup_distance=0)
    assert "is damaged" in caplog.text and again.digest == first.digest and len(again) == len(first)
    assert np.array_equal(np.load(hashes), good)
