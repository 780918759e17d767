"""A straightforward reference implementation of the seed's 25 features, for comparison only.

What a first version written from the textbook looks like: the course project's 25 features
(``REFERENCE_NAMES``: hue/saturation/value statistics, colourfulness, Canny/Sobel/Laplacian edges,
GLCM and LBP texture, Haar-cascade faces), one image at a time, decoded at full resolution,
OpenCV for colour spaces and edges, scikit-image's GLCM with 256 grey levels and 4 angles and its
LBP, and the Haar cascade run on the full-size image with OpenCV's default scale step.

:mod:`genreclf.features.cover25` keeps their four kinds (colour, edges, texture, faces) and 7 of
their names but redefines the rest, chosen on real covers (docs/features.md). ``bench`` times both
extractors on the same covers, and ``evaluate`` trains the same forest on either table: the
reference is the baseline our features must beat, in speed and in accuracy.
"""
from __future__ import annotations

import math
from pathlib import Path

import cv2
import numpy as np
from skimage.feature import graycomatrix, graycoprops, local_binary_pattern

from genreclf.data.images import decode_rgb

# the seed's 25 features, in the course project's order
REFERENCE_NAMES: list[str] = [
    "hue_mean", "hue_std", "sat_mean", "sat_std", "val_mean", "val_std", "colourfulness", "dark_share",
    "bright_share", "hue_entropy", "edge_density", "grad_mean", "edge_orient_entropy", "hv_grad_ratio",
    "laplacian_var", "glcm_contrast", "glcm_homogeneity", "glcm_energy", "glcm_correlation", "lbp_entropy",
    "lbp_uniformity", "grey_std", "face_count", "face_area_share", "face_present"]
_ANGLES = [0, np.pi / 4, np.pi / 2, 3 * np.pi / 4]
_cascade = None


def _entropy(counts: np.ndarray) -> float:
    p = counts / counts.sum() if counts.sum() > 0 else counts
    p = p[p > 0]
    return float(-(p * np.log(p)).sum() / math.log(len(counts))) if len(p) else 0.0


def extract_reference(data: bytes) -> np.ndarray:
    global _cascade
    rgb = decode_rgb(data)  # full resolution
    hsv = cv2.cvtColor(rgb, cv2.COLOR_RGB2HSV_FULL).astype(np.float64) / 255.0
    h, s, v = hsv[..., 0], hsv[..., 1], hsv[..., 2]
    grey = cv2.cvtColor(rgb, cv2.COLOR_RGB2GRAY)
    f = {}

    # colour
    if s.sum() > 1e-6:
        c = (s * np.cos(2 * np.pi * h)).sum() / s.sum()
        sn = (s * np.sin(2 * np.pi * h)).sum() / s.sum()
        f["hue_mean"], f["hue_std"] = (math.atan2(sn, c) / (2 * np.pi)) % 1.0, 1.0 - min(1.0, math.hypot(c, sn))
    else:
        f["hue_mean"] = f["hue_std"] = 0.0
    f["sat_mean"], f["sat_std"], f["val_mean"], f["val_std"] = s.mean(), s.std(), v.mean(), v.std()
    r, g, b = (rgb[..., k].astype(np.float64) for k in range(3))
    rg, yb = r - g, 0.5 * (r + g) - b
    f["colourfulness"] = math.hypot(rg.std(), yb.std()) + 0.3 * math.hypot(rg.mean(), yb.mean())
    f["dark_share"], f["bright_share"] = (v < 0.2).mean(), (v >= 0.85).mean()
    chroma = (s >= 0.2) & (v >= 0.2)
    f["hue_entropy"] = _entropy(np.histogram(h[chroma], bins=18, range=(0, 1))[0])

    # edges
    gf = grey.astype(np.float64) / 255.0
    gx, gy = cv2.Sobel(gf, cv2.CV_64F, 1, 0), cv2.Sobel(gf, cv2.CV_64F, 0, 1)
    mag = np.sqrt(gx ** 2 + gy ** 2)
    f["edge_density"] = (cv2.Canny(grey, 100, 200) > 0).mean()
    f["grad_mean"] = mag.mean()
    orient = np.mod(np.arctan2(gy, gx), np.pi)
    f["edge_orient_entropy"] = _entropy(np.histogram(orient, bins=12, range=(0, np.pi), weights=mag)[0])
    sx, sy = np.abs(gx).sum(), np.abs(gy).sum()
    f["hv_grad_ratio"] = sx / (sx + sy) if sx + sy > 0 else 0.5
    f["laplacian_var"] = math.log1p(cv2.Laplacian(grey, cv2.CV_64F).var())

    # texture
    glcm = graycomatrix(grey, distances=[1], angles=_ANGLES, levels=256, symmetric=True, normed=True)
    for prop in ("contrast", "homogeneity", "energy", "correlation"):
        f[f"glcm_{prop}"] = graycoprops(glcm, prop).mean()
    lbp = local_binary_pattern(grey, P=8, R=1, method="uniform")
    hist = np.bincount(lbp.astype(np.int64).ravel(), minlength=10)
    f["lbp_entropy"], f["lbp_uniformity"] = _entropy(hist), (lbp < 9).mean()
    f["grey_std"] = gf.std()

    # faces, on the full-size image
    if _cascade is None:
        _cascade = cv2.CascadeClassifier(str(Path(cv2.data.haarcascades) / "haarcascade_frontalface_default.xml"))
    side = min(grey.shape) // 5
    faces = _cascade.detectMultiScale(cv2.equalizeHist(grey), scaleFactor=1.1, minNeighbors=5, minSize=(side, side))
    f["face_count"] = float(len(faces))
    f["face_area_share"] = max((w * hh for _, _, w, hh in faces), default=0) / grey.size
    f["face_present"] = float(len(faces) > 0)
    return np.array([f[name] for name in REFERENCE_NAMES], dtype=np.float64)


def extract_reference_many(blobs: list[bytes]) -> np.ndarray:
    """(N, 25) reference features of encoded covers, one after the other (a worker's share of a table)."""
    return np.stack([extract_reference(b) for b in blobs])
