"""The 25 features in worker processes (joblib): parallel extraction equals serial, and the benchmark's
parallel path beats the reference implementation."""
from __future__ import annotations

import io

import numpy as np
import pytest
from PIL import Image

from genreclf.bench import runner as bench
from genreclf.data import images, synthetic
from genreclf.features import cover25 as F

GENRES = ["HipHop", "Rock", "Pop", "Electronic"]


@pytest.fixture(scope="module")
def covers300():
    return [synthetic.make_cover(g, i) for g in GENRES for i in range(6)]


def test_parallel_equals_serial(covers300):
    data = [images.encode(c, "JPEG") for c in covers300[:12]]
    mixed = covers300[:12] + data  # arrays and bytes in one call
    serial = F.extract_many(mixed, progress=False, workers=1)
    parallel = F.extract_many(mixed, progress=False, workers=2, chunk=5)
    assert parallel.shape == (24, 25)
    np.testing.assert_array_equal(parallel, serial)
    np.testing.assert_array_equal(serial[0], F.extract(covers300[0]))
    np.testing.assert_array_equal(serial[12], F.extract_bytes(data[0]))
    batch = np.stack(covers300[:12])  # an (N, H, W, 3) array works too
    np.testing.assert_array_equal(F.extract_many(batch, progress=False, workers=2, chunk=4), serial[:12])


def test_bench_features_is_faster_than_the_reference():
    covers = bench.jpeg_covers(GENRES, 4)
    assert Image.open(io.BytesIO(covers[0])).size == (640, 640)
    m = bench.bench_features(covers, repeats=1, workers=2)["metrics"]
    assert m["covers"] == 4 and m["reference_ips"] > 0
    # the full benchmark (64 covers, idle machine) shows >= 20x; 4 covers on a busy test machine
    # still show the single-core algorithmic gain clearly
    assert m["speedup_1core"] > 3, m
