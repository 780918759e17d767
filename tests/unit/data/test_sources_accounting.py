"""Image folders and data files as a careless or hostile user leaves them."""
from __future__ import annotations

import os
import subprocess
import tempfile
import time
from pathlib import Path

import pytest

from genreclf import config as C
from genreclf.data.covers import load_covers
from genreclf.data.images import MAX_FILE_BYTES, encode
from genreclf.data.sources import DataError, open_source
from genreclf.data.synthetic import make_cover
from genreclf.serving.payloads import predict_files


def _folder(root: Path, per: int = 6) -> Path:
    for g in ("jazz", "rock"):
        (root / g).mkdir(parents=True)
        for k in range(per):
            (root / g / f"{k}.png").write_bytes(encode(make_cover("Rock" if g == "rock" else "Jazz", k), "PNG"))
    return root


def test_every_unused_entry_is_counted_and_named(cover_cache, tmp_path):
    root = _folder(tmp_path / "covers")
    outside = tmp_path / "secret.png"
    outside.write_bytes(encode(make_cover("Pop", 1), "PNG"))
    (root / "jazz" / ".thumbs").mkdir()
    (root / "jazz" / ".thumbs" / "0.png").write_bytes(encode(make_cover("Pop", 2), "PNG"))
    (root / "jazz" / "leak.png").symlink_to(outside)
    (root / "rock" / "loop").symlink_to(root / "rock")
    (root / "rock" / "dangling.png").symlink_to(root / "nowhere.png")
    os.mkfifo(root / "rock" / "pipe.png")
    (root / "readme.png").write_bytes(b"at the root")
    with open(root / "rock" / "huge.png", "wb") as f:
        f.truncate(MAX_FILE_BYTES + 1)  # sparse: over the cap without using the disk
    cfg = C.build(C.DataConfig, None, {"data": str(root), "genres": "jazz,rock", "cache_size": 32,
                                       "dedup_distance": 0})
    covers = load_covers(cfg, progress=False)
    reasons = {s["sample_id"]: s["reason"] for s in covers.report["skipped_files"]}
    assert reasons["jazz/.thumbs"] == "hidden entry"
    assert reasons["jazz/leak.png"] == "symlink leads outside the data root"
    assert reasons["rock/loop"] == "folder visited twice (symlink loop)"
    assert reasons["rock/dangling.png"] == "broken or looping symlink"
    assert reasons["rock/pipe.png"].startswith("not a regular file")
    assert reasons["readme.png"] == "not inside a genre folder"
    assert reasons["rock/huge.png"].startswith("over the 20 MiB per-file cap")
    assert covers.report["skipped"] == len(reasons) == 7
    assert sorted(covers.ids) == sorted(f"{g}/{k}.png" for g in ("jazz", "rock") for k in range(6))


@pytest.mark.skipif(not hasattr(os, "setuid"), reason="POSIX only")
def test_unreadable_file_is_a_named_skip_not_an_abort():
    """EACCES on one file: the others are still read, the file is named."""
    root = Path(tempfile.mkdtemp(prefix="genreclf-eacces-"))
    try:
        _folder(root, per=2)
        (root / "jazz" / "locked.png").write_bytes(b"x")
        os.chmod(root / "jazz" / "locked.png", 0)
        for p in [root, *root.rglob("*")]:
            if p.name != "locked.png":
                os.chmod(p, 0o755 if p.is_dir() else 0o644)
        source = open_source(str(root))
        drop = os.geteuid() == 0
        if drop:
            os.seteuid(65534)  # as root, chmod does not stop reads: read as an unprivileged user
        try:
            ids = [r.sample_id for r in source.records(["jazz", "rock"])]
        finally:
            if drop:
                os.seteuid(0)
        assert len(ids) == 4
        assert source.unused == [{"sample_id": "jazz/locked.png", "genre": "jazz",
                                  "reason": "cannot read (Permission denied)"}]
    finally:
        subprocess.run(["rm", "-rf", str(root)], check=False)


@pytest.mark.parametrize("content", [b"", b"PAR1 truncated", b"not parquet at all" * 100])
def test_broken_parquet_is_a_data_error_naming_the_file(tmp_path, content):
    bad = tmp_path / "train.parquet"
    bad.write_bytes(content)
    with pytest.raises(DataError, match="train.parquet: not a readable parquet file"):
        open_source(str(bad))


def test_predict_refuses_fifo_and_devices_without_hanging(tmp_path, capsys):
    fifo = tmp_path / "cover.png"
    os.mkfifo(fifo)
    start = time.monotonic()
    code = predict_files("models:/no-such-model@champion", [str(fifo), "/dev/zero", str(tmp_path)])
    err = capsys.readouterr().err
    assert code == 1 and time.monotonic() - start < 10
    assert f"{fifo}: not a regular file" in err and "/dev/zero: not a regular file" in err
    assert "3 of 3 file(s) could not be predicted" in err
