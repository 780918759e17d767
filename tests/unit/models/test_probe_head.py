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
    assert table.shape == (len(covers), 2, 1280) and table.dtype == np.float32
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
