"""Grad-CAM (pytorch-grad-cam): what part of a cover made the network say a genre.

``Explainer`` builds the CAM once (its hooks on the target layer) and is reused for every batch,
then releases the hooks on exit - hooks left on a model would copy activations on every later
forward pass. Galleries: for each genre, its most confident correct and wrong test predictions,
each with the overlay for the predicted genre (what the network saw) and the true/predicted genre.
"""
from __future__ import annotations

import cv2
import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np
import torch
from matplotlib.figure import Figure
from pytorch_grad_cam import GradCAM
from pytorch_grad_cam.utils.image import show_cam_on_image
from pytorch_grad_cam.utils.model_targets import ClassifierOutputTarget
from torch import nn

from genreclf.nets import backbones
from genreclf.nets.transforms import create_transform, normalize, to_chw


def overlay(cam: np.ndarray, rgb: np.ndarray, image_weight: float = 0.55) -> np.ndarray:
    """Heat map (H', W') in [0, 1] over an (H, W, 3) uint8 cover -> (H, W, 3) uint8."""
    cam = cv2.resize(np.asarray(cam, dtype=np.float32), (rgb.shape[1], rgb.shape[0]), interpolation=cv2.INTER_LINEAR)
    return show_cam_on_image(rgb.astype(np.float32) / 255.0, np.clip(cam, 0, 1), use_rgb=True,
                             image_weight=image_weight)


class Explainer:
    """``with Explainer(model, backbone, image_size) as ex: cams = ex(covers, classes)``."""

    def __init__(self, model: nn.Module, backbone: str, image_size: int):
        self.model, self.image_size = model, image_size
        self.layer = backbones.gradcam_target_layer(model, backbone)
        self.device = next(model.parameters()).device
        self.transform = create_transform(image_size, is_training=False)
        self.cam: GradCAM | None = None

    def __enter__(self) -> "Explainer":
        self.cam = GradCAM(model=self.model, target_layers=[self.layer])
        # the input then requires grad, so gradients reach the target layer even where weights are
        # frozen (GradCAM's constructor does not take this BaseCAM option; forward reads the attribute)
        self.cam.compute_input_gradient = True
        return self

    def __exit__(self, *exc) -> None:
        if self.cam is not None:
            self.cam.activations_and_grads.release()
        self.cam = None

    def __call__(self, covers: list[np.ndarray], classes: list[int], batch_size: int = 16) -> np.ndarray:
        """(N, image_size, image_size) maps in [0, 1] for class ``classes[i]`` of cover ``i``."""
        if self.cam is None:
            raise RuntimeError("use the Explainer as a context manager: with Explainer(...) as ex")
        out = []
        for s in range(0, len(covers), batch_size):
            with torch.inference_mode(False), torch.enable_grad():  # whatever mode the caller is in
                x = torch.stack([self.transform(to_chw(c)) for c in covers[s:s + batch_size]]).to(self.device)
                out.append(self.cam(input_tensor=normalize(x),
                                    targets=[ClassifierOutputTarget(int(k)) for k in classes[s:s + batch_size]]))
        return np.concatenate(out) if out else np.zeros((0, self.image_size, self.image_size), np.float32)


def explain(model: nn.Module, backbone: str, image_size: int, rgb: np.ndarray, class_index: int) -> np.ndarray:
    """One overlay (uint8, the cover's size) for one cover and class."""
    with Explainer(model, backbone, image_size) as ex:
        return overlay(ex([rgb], [class_index])[0], rgb)


def pick(labels: np.ndarray, proba: np.ndarray, genre: int, n: int) -> tuple[np.ndarray, np.ndarray]:
    """Positions of the ``n`` most confident correct and wrong predictions for covers of ``genre``."""
    pred, conf = proba.argmax(1), proba.max(1)
    right = np.flatnonzero((labels == genre) & (pred == genre))
    wrong = np.flatnonzero((labels == genre) & (pred != genre))
    return right[np.argsort(-conf[right], kind="stable")][:n], wrong[np.argsort(-conf[wrong], kind="stable")][:n]


def gallery_figure(genre: str, rows: list[tuple[str, list[tuple[np.ndarray, str, bool]]]]):
    """A grid: one row per group (correct / wrong), one tile per cover with its caption."""
    cols = max([len(tiles) for _, tiles in rows] + [1])
    fig, axes = plt.subplots(len(rows), cols, figsize=(2.3 * cols, 2.6 * len(rows)), squeeze=False)
    for r, (label, tiles) in enumerate(rows):
        for c in range(cols):
            ax = axes[r][c]
            ax.axis("off")
            if c < len(tiles):
                img, caption, ok = tiles[c]
                ax.imshow(img)
                ax.set_title(caption, fontsize=7, color="darkgreen" if ok else "darkred")
            elif c == 0:
                ax.text(0.5, 0.5, "none in the test split", ha="center", va="center", fontsize=8)
        axes[r][0].text(-0.08, 0.5, label, transform=axes[r][0].transAxes, rotation=90, ha="right", va="center")
    fig.suptitle(f"Grad-CAM - covers of {genre}", fontsize=10)
    fig.tight_layout()
    return fig


def galleries(model: nn.Module, backbone: str, image_size: int, images: np.ndarray, labels: np.ndarray,
              proba: np.ndarray, genres: list[str], per_genre: int) -> dict[str, Figure]:
    """One gallery figure per genre, by artifact path ``gradcam/<genre>.png``."""
    figures = {}
    pred = proba.argmax(1)
    with Explainer(model, backbone, image_size) as ex:
        for k, genre in enumerate(genres):
            right, wrong = pick(labels, proba, k, per_genre)
            chosen = np.concatenate([right, wrong]).astype(int)
            covers = [np.asarray(images[i]) for i in chosen]
            cams = ex(covers, [pred[i] for i in chosen])
            tiles = [(overlay(cam, cover), f"true {genre}\npred {genres[pred[i]]} ({proba[i, pred[i]]:.0%})",
                      pred[i] == k) for cam, cover, i in zip(cams, covers, chosen)]
            figures[f"gradcam/{genre}.png"] = gallery_figure(genre, [("correct", tiles[:len(right)]),
                                                                     ("wrong", tiles[len(right):])])
    return figures
