"""serving/batch.py on folders and on disk: the training data's folder policy (symlinks out, FIFOs,
hidden entries, the per-file cap) with every entry not scored counted and named, and parts and
manifest written whole and durably under unique temporary names."""
from __future__ import annotations

import json
import os

import numpy as np
import pandas as pd
import pytest

from genreclf.data import sources
from genreclf.data.images import encode
from genreclf.serving import batch


def one_genre(frame: pd.DataFrame) -> pd.DataFrame:
    return pd.DataFrame({"genre": ["pop"] * len(frame), "p_pop": [1.0] * len(frame)})


def png(seed: int) -> bytes:
    return encode(np.random.default_rng(seed).integers(0, 255, (8, 8, 3), dtype=np.uint8), "PNG")


@pytest.fixture
def folder(tmp_path):
    root, outside = tmp_path / "covers", tmp_path / "elsewhere"
    (root / "sub").mkdir(parents=True)
    outside.mkdir()
    (root / "a.png").write_bytes(png(0))
    (root / "sub" / "b.png").write_bytes(png(1))
    (root / "big.png").write_bytes(png(2) + b"\0" * 4096)  # over the (lowered) cap
    (root / ".hidden.png").write_bytes(png(3))
    (root / "notes.txt").write_text("not a cover")
    (outside / "secret.png").write_bytes(png(4))
    (root / "leak.png").symlink_to(outside / "secret.png")
    (root / "inside.png").symlink_to(root / "a.png")  # a link that stays in the folder is followed
    os.mkfifo(root / "pipe.png")  # reading it would block forever
    return root


def test_folder_follows_the_training_policy_and_names_what_it_does_not_score(folder, tmp_path, monkeypatch):
    monkeypatch.setattr(sources, "MAX_FILE_BYTES", 1024)
    source = batch.open_source(str(folder))
    assert source.ids == ["a.png", "big.png", "inside.png", "sub/b.png"]
    assert dict(map(tuple, source.unused)) == {
        ".hidden.png": "hidden entry", "leak.png": "symlink leads outside the data root",
        "notes.txt": "not an image file (by its suffix)", "pipe.png": "not a regular file (FIFO, socket or device)"}
    assert source.ignored == 4
    out = tmp_path / "out"
    out.mkdir()
    summary = batch.run_batch(source, out, batch.Manifest(out, {"input": "covers"}), 2, one_genre)
    assert summary["n_scored"] == 3 and summary["n_skipped"] == 1
    assert summary["skipped"] == [["big.png", "over the 0 MiB per-file cap"]]
    manifest = json.loads((out / batch.MANIFEST).read_text())
    assert manifest["ignored"] == source.unused  # the report beside the predictions
    assert sorted(batch.read_predictions(out)["id"]) == ["a.png", "inside.png", "sub/b.png"]


def test_parts_and_manifest_are_written_whole_durably_and_under_unique_names(tmp_path, monkeypatch):
    (tmp_path / "in").mkdir()
    for i in range(3):
        (tmp_path / "in" / f"{i}.png").write_bytes(png(i))
    out = tmp_path / "out"
    out.mkdir()
    synced, temps, real_fsync, real_mkstemp = [], [], os.fsync, batch.tempfile.mkstemp

    def fsync(fd):
        synced.append(os.readlink(f"/proc/self/fd/{fd}"))
        real_fsync(fd)

    def mkstemp(**kw):
        fd, name = real_mkstemp(**kw)
        temps.append(name)
        return fd, name
    monkeypatch.setattr(batch.os, "fsync", fsync)
    monkeypatch.setattr(batch.tempfile, "mkstemp", mkstemp)
    batch.run_batch(batch.open_source(str(tmp_path / "in")), out, batch.Manifest(out, {"input": "in"}), 2, one_genre)
    assert len(set(temps)) == len(temps) and all(os.path.dirname(t) == str(out) for t in temps)
    assert sorted(os.listdir(out)) == [batch.MANIFEST, "part-00000.parquet", "part-00001.parquet"]  # no temp left
    # each file's bytes reach the disk before its rename, and the folder after it
    assert str(out) in synced and synced.count(str(out)) == len(temps)
    assert all(t in synced for t in temps)


def test_a_failed_manifest_write_keeps_the_previous_one_and_leaves_no_temporary(tmp_path, monkeypatch):
    manifest = batch.Manifest(tmp_path, {"input": "x"})
    manifest.mark(0, {"rows": 1, "skipped": [], "genres": {"pop": 1}})
    before = (tmp_path / batch.MANIFEST).read_text()

    def full_disk(fd):
        raise OSError(28, "No space left on device")
    monkeypatch.setattr(batch.os, "fsync", full_disk)
    with pytest.raises(OSError, match="No space left"):
        manifest.mark(1, {"rows": 1, "skipped": [], "genres": {"pop": 1}})
    assert (tmp_path / batch.MANIFEST).read_text() == before
    assert os.listdir(tmp_path) == [batch.MANIFEST]
