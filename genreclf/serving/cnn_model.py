"""The registered CNN (``album-genre-cnn``): a pyfunc with its preprocessing inside.

Artifacts are a plain ``state_dict`` (saved from CPU tensors) and a JSON config, so a model trained
on a GPU loads and predicts on a CPU-only machine. Inputs and outputs are the shared ones of
``contract.CoverModel``: covers are decoded exactly like the training cache (``decode_rgb`` at the
cache size), then resized by the same eval preset as in training.
"""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import torch

from genreclf.cnn import backbones
from genreclf.cnn.device import pick_device
from genreclf.cnn.gradcam import explain
from genreclf.cnn.transforms import create_transform, flip_views, mean_softmax, normalize, to_chw
from genreclf.config import CNNConfig
from genreclf.data.covers import CoverSet
from genreclf.data.images import as_rgb
from genreclf.errors import UserError
from genreclf.serving.contract import CoverModel

BATCH = 64  # covers per forward pass: bounded memory whatever the request size


class CNNCoverModel(CoverModel):
    """Exposes ``.model`` (torch, eval mode), ``.genres``, ``.size`` (decode size), ``.meta``."""

    code_file = str(Path(__file__).with_name("cnn_model_code.py"))

    def load_context(self, context) -> None:
        meta = json.loads(Path(context.artifacts["config"]).read_text())
        state = torch.load(context.artifacts["weights"], map_location="cpu", weights_only=True)
        self.setup(meta, state)

    def setup(self, meta: dict, state_dict: dict, device: str | None = None) -> CNNCoverModel:
        self.meta, self.genres, self.size = meta, list(meta["genres"]), int(meta["cache_size"])
        self.backbone, self.image_size, self.tta = meta["backbone"], int(meta["image_size"]), bool(meta["tta"])
        self.device = pick_device(device or "auto")
        model = backbones.create_model(self.backbone, len(self.genres), pretrained=False)
        model.load_state_dict(state_dict)
        self.model = model.to(self.device).eval()
        self.transform = create_transform(self.image_size, is_training=False)
        return self

    def batch(self, covers: list[np.ndarray]) -> torch.Tensor:
        """Decoded covers -> the normalised input batch of the network, on its device."""
        x = torch.stack([self.transform(to_chw(c)) for c in covers]).to(self.device)
        return normalize(x, self.device.type == "cuda")

    def predict_proba(self, covers: list[np.ndarray]) -> np.ndarray:
        out = []
        with torch.inference_mode():
            for s in range(0, len(covers), BATCH):
                # the same flip averaging the test metrics were measured with
                p = mean_softmax(self.model, flip_views(self.batch(covers[s:s + BATCH]), self.tta))
                out.append(p.cpu().numpy())
        return np.concatenate(out) if out else np.zeros((0, len(self.genres)))

    def explain(self, rgb, genre: str | None = None) -> tuple[np.ndarray, str]:
        """(Grad-CAM overlay as uint8 RGB at the decode size, genre explained: ``genre`` or the predicted one)."""
        cover = as_rgb(rgb, self.size, name="cover")
        if genre is None:
            genre = self.genres[int(self.predict_proba([cover])[0].argmax())]
        if genre not in self.genres:
            raise UserError(f"genre {genre!r} is not one of {self.genres}")
        return explain(self.model, self.backbone, self.image_size, cover, self.genres.index(genre)), genre


def meta_for(cfg: CNNConfig, covers: CoverSet) -> dict:
    return {"backbone": cfg.backbone, "genres": list(covers.genres), "image_size": cfg.image_size,
            "cache_size": int(covers.images.shape[1]), "tta": cfg.tta, "data_digest": covers.digest[:20]}


def write_artifacts(folder: Path, model: torch.nn.Module, cfg: CNNConfig, covers: CoverSet) -> dict[str, str]:
    """The files the pyfunc loads: CPU weights and the JSON config."""
    weights, config = folder / "weights.pt", folder / "config.json"
    torch.save({k: v.detach().cpu() for k, v in model.state_dict().items()}, weights)
    config.write_text(json.dumps(meta_for(cfg, covers), indent=2))
    return {"weights": str(weights), "config": str(config)}
