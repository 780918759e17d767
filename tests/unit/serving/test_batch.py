"""serving/batch.py: chunked, resumable scoring - parquet inputs read by row group, manifests that
refuse another job, bad covers skipped with their reason (a plain function stands in for the model)."""
from __future__ import annotations

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from genreclf.config import ConfigError
from genreclf.data.images import encode
from genreclf.serving import batch


def by_size(frame: pd.DataFrame) -> pd.DataFrame:
    """A stand-in classifier: 'big' when the encoded cover is over 100 bytes."""
    big = np.array([len(b) > 100 for b in frame["image"]], dtype=float)
    return pd.DataFrame({"genre": np.where(big > 0, "big", "small"), "p_big": big, "p_small": 1 - big})


def covers_parquet(path, n: int, row_group: int, with_id: bool = True):
    rng = np.random.default_rng(0)
    images = [encode(rng.integers(0, 255, (8 + i % 8, 8, 3), dtype=np.uint8), "PNG") for i in range(n)]
    images[min(5, n - 1)] = b"not an image"
    cols = {"image": pa.array(images, pa.binary())}
    if with_id:
        cols["id"] = pa.array([f"c{i}" for i in range(n)])
    pq.write_table(pa.table(cols), path, row_group_size=row_group)
    return images


def test_parquet_chunks_cross_row_groups_and_resume(tmp_path):
    images = covers_parquet(tmp_path / "in.parquet", 23, row_group=4)
    source = batch.open_source(str(tmp_path / "in.parquet"))
    assert source.ids[:2] == ["c0", "c1"] and source.read(3, 10) == images[3:10]  # spans three row groups
    out = tmp_path / "out"
    out.mkdir()
    ident = {"input": "in", "chunk_size": 5}
    calls = []

    def counting(frame):
        calls.append(len(frame))
        return by_size(frame)
    summary = batch.run_batch(source, out, batch.Manifest(out, ident), 5, counting)
    assert summary["n_scored"] == 22 and summary["skipped"][0][0] == "c5" and "c5" in summary["skipped"][0][1]
    preds = batch.read_predictions(out)
    assert sorted(preds["id"]) == sorted(f"c{i}" for i in range(23) if i != 5)
    again = batch.run_batch(source, out, batch.Manifest(out, ident), 5, counting)  # nothing left to do
    assert again == summary and len(calls) == 5
    with pytest.raises(ConfigError, match=r"another scoring job \(differs in \['chunk_size'\]\)"):
        batch.Manifest(out, {"input": "in", "chunk_size": 7})


def test_bad_inputs_are_named(tmp_path):
    with pytest.raises(ConfigError, match="input='nowhere': not found"):
        batch.open_source("nowhere")
    (tmp_path / "x.parquet").write_text("no parquet")
    with pytest.raises(ConfigError, match="not a parquet file"):
        batch.open_source(str(tmp_path / "x.parquet"))
    pq.write_table(pa.table({"img": [b"x"]}), tmp_path / "y.parquet")
    with pytest.raises(ConfigError, match=r"no column 'image' \(columns: \['img'\]\)"):
        batch.open_source(str(tmp_path / "y.parquet"))
    covers_parquet(tmp_path / "noid.parquet", 3, row_group=2, with_id=False)
    assert batch.open_source(str(tmp_path / "noid.parquet")).ids == ["0", "1", "2"]
