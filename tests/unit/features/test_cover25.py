"""The 25 CV features: names and docs, finiteness, resolution invariance, cache (in worker processes:
tests/e2e/test_cover25_workers.py)."""
from __future__ import annotations

import io
import re

import numpy as np
import pandas as pd
import pytest
from helpers import ROOT
from PIL import Image

from genreclf.config import DataConfig
from genreclf.data import cachefiles, images, synthetic
from genreclf.data.covers import cache_root, load_covers
from genreclf.data.images import BadImageError
from genreclf.features import cover25 as F

GENRES = ["HipHop", "Rock", "Pop", "Electronic"]


@pytest.fixture(scope="module")
def covers300():
    return [synthetic.make_cover(g, i) for g in GENRES for i in range(6)]


def test_25_named_features_in_four_documented_groups():
    assert len(F.FEATURE_NAMES) == 25 and len(set(F.FEATURE_NAMES)) == 25
    assert {g: len(n) for g, n in F.FEATURE_GROUPS.items()} == {"colour": 10, "edges": 6, "texture": 7, "faces": 2}
    assert sum(F.FEATURE_GROUPS.values(), []) == F.FEATURE_NAMES
    # the table in docs/features.md is the same as FEATURE_DOCS (name | group | definition; the ablation
    # tables further down have more columns)
    rows = re.findall(r"^\| `(\w+)` \| (\w+) \| ([^|]+?) \|$", (ROOT / "docs" / "features.md").read_text(), re.M)
    assert [r[0] for r in rows] == F.FEATURE_NAMES
    for name, group, definition in rows:
        assert group == F.GROUP_OF[name] and definition == F.FEATURE_DOCS[name], name


DEGENERATE = {
    "black": np.zeros((300, 300, 3), np.uint8),
    "white": np.full((300, 300, 3), 255, np.uint8),
    "single colour": np.full((64, 80, 3), (200, 30, 90), np.uint8),
    "tiny 1x1": np.full((1, 1, 3), 128, np.uint8),
    "tiny 3x5": np.arange(45, dtype=np.uint8).reshape(3, 5, 3),
    "grayscale 2d": np.tile(np.arange(256, dtype=np.uint8), (256, 1)),
    "float in [0, 1]": np.random.default_rng(0).random((50, 50, 3)),
}


@pytest.mark.parametrize("name", list(DEGENERATE))
def test_finite_for_degenerate_arrays(name):
    x = F.extract(DEGENERATE[name])
    assert x.shape == (25,) and np.isfinite(x).all()


@pytest.mark.parametrize("mode", ["L", "LA", "RGBA", "P", "1", "I;16"])
def test_finite_for_encoded_covers_of_any_mode(mode):
    rgb = synthetic.make_cover("Rock", 1, size=96)
    img = (Image.fromarray(rgb[..., 0].astype(np.uint16) * 257) if mode == "I;16"
           else Image.fromarray(rgb).convert(mode))
    buf = io.BytesIO()
    img.save(buf, format="PNG")
    x = F.extract_bytes(buf.getvalue())
    assert x.shape == (25,) and np.isfinite(x).all()


def test_flat_cover_values_are_the_documented_ones():
    v = dict(zip(F.FEATURE_NAMES, F.extract(np.full((200, 200, 3), 77, np.uint8))))
    assert v["val_std"] == v["colourfulness"] == v["yellow_share"] == v["lab_a_std"] == v["lab_b_std"] == 0.0
    assert abs(v["lab_b_mean"] - 0.5) < 0.01 and abs(v["border_grey_mean"] - 77 / 255) < 1e-6  # neutral grey
    assert v["edge_density"] == v["grad_p90"] == v["diagonal_grad_share"] == v["mirror_asymmetry"] == 0.0
    assert v["lbp_spot_share"] == v["lbp_entropy"] == v["fine_detail_share"] == v["face_count"] == 0.0
    assert v["lbp_flat_share"] == v["flat_block_share"] == 1.0 and v["centre_minus_border_val"] == 0.0


def test_not_an_image_is_a_clear_error():
    with pytest.raises(BadImageError, match="cover.jpg: not a decodable image"):
        F.extract_bytes(b"definitely not a jpeg", name="cover.jpg")


def _standardised(a, b, spread):
    return np.median(np.abs(a - b), axis=0) / spread


FINE_DETAIL = ["lbp_spot_share", "lbp_corner_share", "lbp_flat_share", "lbp_entropy", "fine_detail_share"]


def test_300_and_640_copies_agree(covers300):
    """The same cover at 300 and 640 px gives nearly the same features.

    Tolerance for the 23 continuous features: the median difference between the two copies is at
    most a tenth (arrays) or a third (JPEG bytes: DCT-domain vs full decode adds differences of its
    own) of the spread of that feature between covers (FINE_DETAIL: 0.35 and 1.5 spreads, since fine
    detail is what they measure) - so each 640 copy's nearest 300 copy is always its own, which we
    check too. The face detector is a yes/no decision per window, so a borderline face may flip: we
    ask the two copies to agree on faces for at least 90% of covers.
    """
    big = [np.asarray(Image.fromarray(c).resize((640, 640), Image.BICUBIC)) for c in covers300]
    pairs = {"arrays": (F.extract_many(covers300, progress=False), F.extract_many(big, progress=False)),
             "jpeg": (np.stack([F.extract_bytes(images.encode(c, "JPEG", 92)) for c in covers300]),
                      np.stack([F.extract_bytes(images.encode(c, "JPEG", 92)) for c in big]))}
    face = np.isin(F.FEATURE_NAMES, F.FEATURE_GROUPS["faces"])
    ref = pairs["arrays"][0][:, ~face]
    spread, centre = ref.std(axis=0), ref.mean(axis=0)
    assert (spread > 0).all()
    names = np.array(F.FEATURE_NAMES)[~face]
    # the fine-detail features read pixel-level structure (on real covers that detail carries genre,
    # docs/features.md): they keep a looser bound, chiefly for JPEG bytes
    fine = np.isin(names, FINE_DETAIL)
    for path, tolerance, fine_tolerance in (("arrays", 0.1, 0.35), ("jpeg", 0.35, 1.5)):
        x300, x640 = pairs[path]
        diff = np.median(np.abs(x300[:, ~face] - x640[:, ~face]), axis=0) / spread
        tolerance = np.where(fine, fine_tolerance, tolerance)
        assert (diff <= tolerance).all(), (path, dict(zip(names[diff > tolerance], diff[diff > tolerance].round(3))))
        z300, z640 = (x300[:, ~face] - centre) / spread, (x640[:, ~face] - centre) / spread
        nearest = ((z300[:, None] - z640[None]) ** 2).sum(-1).argmin(axis=0)
        assert (nearest == np.arange(len(z640))).all(), path
        count = F.FEATURE_NAMES.index("face_count")
        assert (x300[:, count] == x640[:, count]).mean() >= 0.9, path


def test_feature_table_is_cached_per_dataset_digest(cover_cache):
    covers = load_covers(DataConfig(data="synthetic:6", cache_size=64), progress=False)
    table = F.features_for(covers, progress=False)
    assert list(table.columns) == F.FEATURE_NAMES and list(table.index) == list(covers.ids)
    np.testing.assert_allclose(table.iloc[3].to_numpy(), F.extract(covers.images[3]))
    cached = list(cache_root().glob(f"features-v{F.FEATURE_VERSION}-*{covers.digest[:24]}.parquet"))
    assert len(cached) == 1
    # mark the cached table: a second call must return the marker, i.e. read the cache, not recompute
    marked = table.copy()
    marked.iloc[0, 0] = -123.0
    marked.to_parquet(cached[0])
    # (with its checksum re-recorded: a table changed behind the cache's back is rebuilt instead)
    sidecar = cached[0].with_suffix(".sha256")
    sidecar.write_text(cachefiles.sha256_file(cached[0]))
    assert F.features_for(covers, progress=False).iloc[0, 0] == -123.0
    # another cover set (other digest) gets its own table
    other = load_covers(DataConfig(data="synthetic:6", cache_size=64, seed=7), progress=False)
    assert other.digest != covers.digest
    assert F.features_for(other, progress=False).iloc[0, 0] != -123.0
    assert len(list(cache_root().glob(f"features-v{F.FEATURE_VERSION}-*.parquet"))) >= 2
    # a table that does not match the covers (e.g. written by a different version) is recomputed
    pd.DataFrame({"x": [1.0]}).to_parquet(cached[0])
    assert F.features_for(covers, progress=False).shape == (len(covers), 25)
