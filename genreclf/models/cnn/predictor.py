"""The CNN family's predictor: a state_dict and its preprocessing.

Artifacts are a plain ``state_dict`` (saved from CPU tensors) and the model's settings in the meta,
so a model trained on a GPU loads and predicts on a CPU-only machine. Covers arrive decoded like the
training cache (at the cache size) and are resized by the same eval preset as in training.
"""
from __future__ import annotations

from pathlib import Path
from typing import Callable

import numpy as np
import torch

from genreclf.config import CNNConfig
from genreclf.data.covers import CoverSet
from genreclf.data.images import as_rgb
from genreclf.errors import UserError
from genreclf.models.cnn.device import pick_device
from genreclf.models.cnn.gradcam import explain
from genreclf.nets import backbones
from genreclf.nets.transforms import create_transform, flip_views, mean_softmax, normalize, to_chw

BATCH = 64  # covers per forward pass: bounded memory whatever the request size


class CNNPredictor:
    """Exposes ``.model`` (torch, eval mode), ``.genres``, ``.size`` (decode size), ``.meta``."""

    def setup(self, meta: dict, state_dict: dict, device: str | None = None) -> CNNPredictor:
        self.meta, self.genres, self.size = meta, list(meta["genres"]), int(meta["decode_size"])
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


def load(artifacts: dict[str, str], meta: dict) -> CNNPredictor:
    state = torch.load(artifacts["weights"], map_location="cpu", weights_only=True)
    return CNNPredictor().setup(meta, state)


def meta_for(cfg: CNNConfig, covers: CoverSet) -> dict:
    """What the predictor needs besides the weights (the trainer adds genres and decode size)."""
    return {"backbone": cfg.backbone, "image_size": cfg.image_size, "tta": cfg.tta}


def weights_writer(model: torch.nn.Module) -> Callable[[Path], dict[str, str]]:
    """Writes the CPU weights the predictor loads (taken now: later training does not change them)."""
    state = {k: v.detach().cpu().clone() for k, v in model.state_dict().items()}

    def write(folder: Path) -> dict[str, str]:
        torch.save(state, folder / "weights.pt")
        return {"weights": str(folder / "weights.pt")}
    return write
