"""Pretrained embeddings (cached per cover set, same features when serving) and the linear-probe head."""
from __future__ import annotations

import numpy as np
import pytest
import skops.io as skops_io
import torch

from genreclf import config as C
from genreclf.data.covers import load_covers
from genreclf.errors import UserError
from genreclf.features import embeddings as E
from genreclf.models.probe import head as H


@pytest.fixture(scope="module")
def embedder():
    torch.set_num_threads(2)
    return E.Embedder.create(image_size=64)


def test_table_is_cached_keyed_and_matches_the_serving_path(embedder, workdir, caplog):
    covers = load_covers(C.DataConfig(data="synthetic:6", cache_size=48), progress=False)
    table = E.embeddings_for(covers, embedder, progress=False)
    # mean and std of the last five stages (1280 + 320 + 192 + 112 + 80 channels), final stage first
    assert table.shape == (len(covers), 2, 2 * 1984) and table.dtype == np.float32
    with caplog.at_level("INFO", logger=E.__name__):
        again = E.embeddings_for(covers, embedder, progress=False)
    assert "from cache" in caplog.text and np.array_equal(again, table)
    (path,) = (E.cache_root() / "embeddings").glob(f"pretrained-*-{embedder.key(covers)[:24]}.npy")
    assert f"{embedder.backbone}-64px-" in path.name
    path.write_bytes(path.read_bytes()[:-16])  # truncated: rebuilt, never used
    assert np.array_equal(E.embeddings_for(covers, embedder, progress=False), table)
    served = embedder.embed([np.asarray(c) for c in covers.images[:3]], flip=True)
    np.testing.assert_allclose(served, E.pooled(table[:3], flip=True), rtol=1e-4, atol=1e-4)
    assert embedder.key(covers) != E.Embedder(embedder.backbone, 96, embedder.net, embedder.info,
                                              embedder.device).key(covers)


def test_embedding_leads_with_the_networks_own_pooled_features_and_stays_finite_when_tiny(embedder):
    assert E.stage_layers("efficientnet_lite0") == ["bn2", "blocks.6", "blocks.5", "blocks.4", "blocks.3"]
    x = torch.rand(2, 3, 64, 64)
    with torch.inference_mode():
        stats, own = embedder.net(x), embedder.net.net(x)  # the wrapped headless net pools bn2 itself
    np.testing.assert_allclose(stats[:, :1280].numpy(), own.numpy(), rtol=1e-5, atol=1e-5)
    assert (stats[:, 1280:2560] > 0).any()  # the final stage's spread, not a copy of its mean
    tiny = E.Embedder.create(image_size=32)  # last stages' maps are 1x1: spread 0, never NaN
    out = tiny.embed([np.full((40, 40, 3), 128, np.uint8)], flip=True)
    assert out.shape == (1, 3968) and np.isfinite(out).all()


def test_probe_chooses_on_val_and_persists_with_its_trusted_types(tmp_path):
    rng = np.random.default_rng(0)
    centres = rng.normal(size=(3, 16)) * 2
    y = np.repeat(np.arange(3), 40)
    X = centres[y] + rng.normal(size=(len(y), 16))
    tr, va = np.arange(len(y)) % 4 != 0, np.arange(len(y)) % 4 == 0
    for kind in ("logistic", "svm"):
        head = H.fit_probe(X[tr], y[tr], X[va], y[va], head=kind)
        assert head.kind == kind and head.c in H.C_GRID[kind] and head.val_macro_f1 > 0.9
        proba = head.predict_proba(X[va], 4)
        assert proba.shape == (va.sum(), 4) and np.allclose(proba.sum(1), 1) and (proba[:, 3] == 0).all()
        file = head.save(tmp_path / f"{kind}.skops")
        assert set(skops_io.get_untrusted_types(file=file)) <= set(H.TRUSTED_TYPES)
        back = H.ProbeHead.load(file, head.kind, head.c)
        np.testing.assert_allclose(back.predict_proba(X[va], 4), proba)
    assert H.fit_probe(X[tr], y[tr], X[va], y[va]).kind in H.HEADS
    with pytest.raises(UserError, match="head='mlp'"):
        H.fit_probe(X[tr], y[tr], X[va], y[va], head="mlp")


def test_a_probe_trained_on_other_embeddings_is_refused_by_name():
    from genreclf.models.probe.family import ProbePredictor

    meta = {"genres": ["Rock", "Pop"], "decode_size": 64, "flip": True, "backbone": "efficientnet_lite0",
            "image_size": 64, "head": "logistic", "c": 0.1, "weights_sha256": "0" * 64}
    for version in (None, E.TABLE_VERSION - 1):
        with pytest.raises(UserError, match=rf"version {version or 1}, .* version {E.TABLE_VERSION} .*train_probe"):
            ProbePredictor({"head": "unused.skops"}, {**meta, "embedding_version": version} if version else meta)
