"""A cover in a format outside the allow-list (a DDS, whose Pillow plugin would raise NotImplementedError):
a named error in `predict`, the demo and a dataset, never a traceback."""
from __future__ import annotations

import struct

from genreclf import config as C
from genreclf.data.covers import load_covers
from genreclf.data.images import encode
from genreclf.data.synthetic import make_cover
from genreclf.entrypoints.demo_explorer import Explorer, Gallery
from genreclf.serving.payloads import predict_files


def _dds() -> bytes:  # Pillow raises NotImplementedError("Unimplemented pixel format") on it
    head = struct.pack("<7I", 124, 0x1007, 4, 4, 0, 0, 0) + b"\0" * 44 + struct.pack("<2I", 32, 4) + b"XYZW"
    return b"DDS " + head + b"\0" * 20 + struct.pack("<5I", 0x1000, 0, 0, 0, 0) + b"\0" * 64


def test_predict_names_the_file_and_goes_on(tmp_path, capsys):
    bad = tmp_path / "odd.dds"
    bad.write_bytes(_dds())
    assert predict_files("models:/unused@champion", [str(bad)]) == 1
    err = capsys.readouterr().err
    assert f"error: {bad}: not a decodable image (unknown or unsupported format" in err
    assert "Traceback" not in err


def test_dataset_skips_it_by_name(tmp_path, monkeypatch):
    monkeypatch.setenv("GENRECLF_CACHE", str(tmp_path / "cache"))
    for g in ("jazz", "rock"):
        (tmp_path / "covers" / g).mkdir(parents=True)
        for k in range(5):
            (tmp_path / "covers" / g / f"{k}.png").write_bytes(encode(make_cover(g.title(), k), "PNG"))
    (tmp_path / "covers" / "jazz" / "odd.dds").write_bytes(_dds())
    cfg = C.build(C.DataConfig, None, {"data": str(tmp_path / "covers"), "genres": "jazz,rock", "cache_size": 24,
                                       "dedup_distance": 0})
    covers = load_covers(cfg, progress=False)
    (skip,) = covers.report["skipped_files"]
    assert skip["sample_id"] == "jazz/odd.dds" and "unsupported format" in skip["reason"]
    assert len(covers) == 10


def test_demo_upload_shows_the_reason(tmp_path):
    bad = tmp_path / "odd.dds"
    bad.write_bytes(_dds())
    # no models and no covers: refusing an upload needs only the size limit and the decode size
    ex = Explorer([], Gallery(), size=32, max_upload_mb=10.0)
    answer = ex.upload(str(bad))
    assert len(answer) == len(ex.outputs) + 1
    assert answer[-2].startswith("⚠️ **Cannot use this upload**: odd.dds: not a decodable image "
                                 "(unknown or unsupported format")
