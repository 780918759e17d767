"""The 25 hand-crafted computer-vision features of the Random Forest baseline.

Every cover is first brought to ONE canonical working resolution (``WORK`` x ``WORK``, area
resampling), and every feature is defined there, so a 300x300 and a 640x640 copy of the same cover
give nearly the same values. The edge and texture features read the grey image lightly smoothed
with a Gaussian of sigma 0.5 px (the face detector too). A sigma of 1 px made pixel-level statistics
(LBP above all) almost independent of the source's resolution, but cost ~3 points of accuracy on
real covers, whose fine detail carries genre (docs/features.md); 0.5 px keeps most of that detail
and still damps aliasing. Every feature is finite for every image
(blank, single-colour, tiny, grayscale): undefined cases have a documented value, never a NaN.

The one-line definition of each feature is ``FEATURE_DOCS`` below; ``docs/features.md`` shows them
as a table (name | group | definition), and a test keeps the two in sync.

:func:`extract_many` runs over all cores in processes, and :func:`features_for` caches a cover set's
table on disk under its digest, so training, tuning and the pipeline extract each cover set once.
"""
from __future__ import annotations

import logging
import math
import os
from pathlib import Path

import cv2
import numpy as np
import pandas as pd

from genreclf.data import cachefiles
from genreclf.data.covers import cache_root
from genreclf.data.images import as_rgb, decode_rgb
from genreclf.progress import progress_bar

log = logging.getLogger(__name__)
WORK = 160            # canonical working resolution: a 640 px JPEG decodes straight to it (DCT scale 1/4)
FEATURE_VERSION = 2   # bump when a definition changes, so cached tables are recomputed
SMOOTH_SIGMA = 0.5    # px at WORK: light Gaussian pre-smoothing of grey for the edge, texture and face features
GLCM_LEVELS = 32
FACE_MIN = 32         # px at WORK: a face at least 1/5 of the cover's side (a subject, not a crowd)
FACE_SCALE = 1.25     # detector scale step; on synthetic covers 1.15 finds 94% vs 89% of faces but costs 2.3x
FACE_NEIGHBOURS = 3   # detections that must overlap to count as a face (precision 1.0 on synthetic covers)
PARALLEL_FROM = 256   # covers: below this, extract_many(workers=None) stays in-process

FEATURE_GROUPS: dict[str, list[str]] = {
    "colour": ["hue_mean", "hue_std", "sat_mean", "sat_std", "val_mean", "val_std", "colourfulness",
               "dark_share", "bright_share", "hue_entropy"],
    "edges": ["edge_density", "grad_mean", "edge_orient_entropy", "hv_grad_ratio", "laplacian_var"],
    "texture": ["glcm_contrast", "glcm_homogeneity", "glcm_energy", "glcm_correlation", "lbp_entropy",
                "lbp_uniformity", "grey_std"],
    "faces": ["face_count", "face_area_share", "face_present"],
}
FEATURE_NAMES: list[str] = [name for names in FEATURE_GROUPS.values() for name in names]
GROUP_OF: dict[str, str] = {name: group for group, names in FEATURE_GROUPS.items() for name in names}
FEATURE_DOCS: dict[str, str] = {
    "hue_mean": "circular mean of hue weighted by saturation, in [0, 1) (0 when achromatic)",
    "hue_std": "circular variance of hue weighted by saturation, 1 - length of the mean vector (0 when achromatic)",
    "sat_mean": "mean HSV saturation",
    "sat_std": "standard deviation of HSV saturation",
    "val_mean": "mean HSV value (brightness)",
    "val_std": "standard deviation of HSV value",
    "colourfulness": "Hasler & Suesstrunk colourfulness: std_rgyb + 0.3 * mean_rgyb on the 0-255 scale",
    "dark_share": "share of pixels with value < 0.2",
    "bright_share": "share of pixels with value >= 0.85",
    "hue_entropy": "entropy of the 18-bin hue histogram of chromatic pixels (S, V >= 0.2) / log 18",
    "edge_density": "share of Canny edge pixels (thresholds 100/200 on smoothed 8-bit grey)",
    "grad_mean": "mean Sobel gradient magnitude of smoothed grey in [0, 1]",
    "edge_orient_entropy": "entropy of the magnitude-weighted 12-bin gradient orientation histogram / log 12",
    "hv_grad_ratio": "horizontal share of gradient: sum abs(d/dx) / (sum abs(d/dx) + sum abs(d/dy)); 0.5 when flat",
    "laplacian_var": "log(1 + variance of the Laplacian of smoothed 8-bit grey): sharpness / fine detail",
    "glcm_contrast": "GLCM contrast of smoothed grey (32 levels, distance 1, symmetric), mean of 4 angles",
    "glcm_homogeneity": "GLCM homogeneity (inverse difference moment), mean of 4 angles",
    "glcm_energy": "GLCM energy (sqrt of angular second moment), mean of 4 angles",
    "glcm_correlation": "GLCM correlation, mean of 4 angles (1 for a flat cover)",
    "lbp_entropy": "entropy of the rotation-invariant uniform LBP(8,1) histogram of smoothed grey (10 bins) / log 10",
    "lbp_uniformity": "share of pixels whose LBP(8,1) pattern is uniform (at most 2 bit transitions)",
    "grey_std": "standard deviation of grey (unsmoothed) in [0, 1]",
    "face_count": "number of frontal faces (at least 1/5 of the cover's side) found by OpenCV's Haar cascade "
                  "on smoothed grey",
    "face_area_share": "area of the largest face divided by the cover's area (0 without faces)",
    "face_present": "1 if at least one face was found, else 0",
}
assert len(FEATURE_NAMES) == 25 and set(FEATURE_DOCS) == set(FEATURE_NAMES)


def _entropy(counts: np.ndarray) -> float:
    """Shannon entropy of a histogram, normalised to [0, 1] by log(#bins); 0 for an empty one."""
    total = counts.sum()
    if total <= 0:
        return 0.0
    p = counts[counts > 0] / total
    return float(-(p * np.log(p)).sum() / math.log(len(counts)))


def canonical(image) -> np.ndarray:
    """Any RGB/grey array (or encoded bytes) -> WORK x WORK x 3 uint8, area-resampled."""
    rgb = as_rgb(image)
    if rgb.shape[:2] != (WORK, WORK):
        rgb = cv2.resize(rgb, (WORK, WORK), interpolation=cv2.INTER_AREA)
    return rgb


# lookup tables over OpenCV's 8-bit full-range hue (0-255 = 0-360 degrees)
_HUE = np.arange(256) / 256.0
_COS, _SIN = np.cos(2 * np.pi * _HUE).astype(np.float32), np.sin(2 * np.pi * _HUE).astype(np.float32)
_HUE_BIN = (_HUE * 18).astype(np.int64)


def _colour(rgb: np.ndarray) -> list[float]:
    hsv = cv2.cvtColor(rgb, cv2.COLOR_RGB2HSV_FULL)
    h, s8, v8 = hsv[..., 0], hsv[..., 1], hsv[..., 2]
    mean, std = (x.ravel() / 255.0 for x in cv2.meanStdDev(hsv))
    s = s8.astype(np.float32)
    w = float(s.sum())
    if w > 1e-3:
        c, sn = float((s * _COS[h]).sum()) / w, float((s * _SIN[h]).sum()) / w
        hue_mean, hue_std = (math.atan2(sn, c) / (2 * np.pi)) % 1.0, 1.0 - min(1.0, math.hypot(c, sn))
    else:
        hue_mean = hue_std = 0.0  # achromatic: hue carries no information
    f = rgb.astype(np.float32)
    rg, yb = f[..., 0] - f[..., 1], 0.5 * (f[..., 0] + f[..., 1]) - f[..., 2]
    colourful = math.hypot(rg.std(), yb.std()) + 0.3 * math.hypot(rg.mean(), yb.mean())
    n = float(h.size)
    chroma = (s8 >= 51) & (v8 >= 51)  # S, V >= 0.2 on the 8-bit scale
    hue_hist = np.bincount(_HUE_BIN[h[chroma]], minlength=18)
    return [hue_mean, hue_std, mean[1], std[1], mean[2], std[2], colourful,
            np.count_nonzero(v8 < 51) / n, np.count_nonzero(v8 >= 217) / n, _entropy(hue_hist)]


def _edges(grey: np.ndarray) -> list[float]:
    g = grey.astype(np.float32) / 255.0
    gx, gy = cv2.Sobel(g, cv2.CV_32F, 1, 0, ksize=3), cv2.Sobel(g, cv2.CV_32F, 0, 1, ksize=3)
    mag, angle = cv2.cartToPolar(gx, gy)  # angle in [0, 2 pi)
    orient = (angle.ravel() * (12 / np.pi)).astype(np.int64) % 12  # direction without sign: 12 bins over pi
    orient_hist = np.bincount(orient, weights=mag.ravel(), minlength=12)
    sx, sy = float(np.abs(gx).sum()), float(np.abs(gy).sum())
    lap = cv2.Laplacian(grey, cv2.CV_32F, ksize=1)
    return [np.count_nonzero(cv2.Canny(grey, 100, 200)) / grey.size, float(mag.mean()), _entropy(orient_hist),
            sx / (sx + sy) if sx + sy > 1e-9 else 0.5, math.log1p(float(lap.var()))]


# GLCM offsets (dy, dx) for skimage's angles 0, 45, 90 and 135 degrees at distance 1
_OFFSETS = ((0, 1), (-1, 1), (-1, 0), (-1, -1))


def _glcm(grey: np.ndarray) -> list[float]:
    q = (grey.astype(np.int64) * GLCM_LEVELS) >> 8
    n, H, W = GLCM_LEVELS, *q.shape
    mats = []
    for dy, dx in _OFFSETS:
        y0, y1, x0, x1 = max(0, -dy), H - max(0, dy), max(0, -dx), W - max(0, dx)
        a, b = q[y0:y1, x0:x1], q[y0 + dy:y1 + dy, x0 + dx:x1 + dx]  # each pixel and its neighbour
        m = np.bincount((a * n + b).ravel(), minlength=n * n).reshape(n, n).astype(np.float64)
        mats.append(m + m.T)  # symmetric
    P = np.stack(mats)
    P /= P.sum(axis=(1, 2), keepdims=True)
    i, j = np.ogrid[:n, :n]
    contrast = (P * (i - j) ** 2).sum(axis=(1, 2))
    homogeneity = (P / (1.0 + (i - j) ** 2)).sum(axis=(1, 2))
    energy = np.sqrt((P ** 2).sum(axis=(1, 2)))
    mu = (P * i).sum(axis=(1, 2))  # symmetric matrix: the same mean and std along both axes
    var = (P * (i - mu[:, None, None]) ** 2).sum(axis=(1, 2))
    cov = (P * (i - mu[:, None, None]) * (j - mu[:, None, None])).sum(axis=(1, 2))
    corr = np.where(var > 1e-12, cov / np.maximum(var, 1e-12), 1.0)  # flat cover: perfectly correlated
    return [contrast.mean(), homogeneity.mean(), energy.mean(), corr.mean()]


# the 8 neighbours of LBP(8, 1), in circular order
_RING = ((-1, -1), (-1, 0), (-1, 1), (0, 1), (1, 1), (1, 0), (1, -1), (0, -1))


def _lbp_table() -> np.ndarray:
    """For each 8-bit pattern: its rotation-invariant uniform code (0-8 ones, 9 = not uniform)."""
    bits = (np.arange(256)[:, None] >> np.arange(8)) & 1
    uniform = (bits != np.roll(bits, 1, axis=1)).sum(axis=1) <= 2  # at most 2 bit transitions
    return np.where(uniform, bits.sum(axis=1), 9).astype(np.uint8)


_LBP_CODE = _lbp_table()


def _lbp(grey: np.ndarray) -> list[float]:
    H, W = grey.shape
    c = grey[1:-1, 1:-1]
    pattern = np.zeros(c.shape, dtype=np.uint8)
    for k, (dy, dx) in enumerate(_RING):
        pattern |= (grey[1 + dy:H - 1 + dy, 1 + dx:W - 1 + dx] >= c).astype(np.uint8) << k
    hist = np.bincount(_LBP_CODE[pattern].ravel(), minlength=10)
    return [_entropy(hist), 1.0 - hist[9] / float(pattern.size)]


_CASCADE: cv2.CascadeClassifier | None = None


def _faces(grey: np.ndarray) -> list[float]:
    global _CASCADE
    if _CASCADE is None:  # once per process (workers load their own)
        path = Path(cv2.data.haarcascades) / "haarcascade_frontalface_default.xml"
        _CASCADE = cv2.CascadeClassifier(str(path))
        if _CASCADE.empty():
            raise RuntimeError(f"could not load OpenCV's face cascade from {path}")
    found = _CASCADE.detectMultiScale(cv2.equalizeHist(grey), scaleFactor=FACE_SCALE,
                                      minNeighbors=FACE_NEIGHBOURS, minSize=(FACE_MIN, FACE_MIN))
    count = len(found)
    largest = max((w * h for _, _, w, h in found), default=0) / float(grey.size)
    return [float(count), largest, float(count > 0)]


def extract(image) -> np.ndarray:
    """The 25 features (FEATURE_NAMES order) of one cover: an RGB/grey array of any size, or bytes."""
    rgb = canonical(image)
    grey = cv2.cvtColor(rgb, cv2.COLOR_RGB2GRAY)
    # pixel-level statistics (LBP above all) and borderline face detections otherwise depend on how
    # the cover was resampled to WORK (a 300 px and a 640 px source alias differently)
    smooth = cv2.GaussianBlur(grey, (0, 0), SMOOTH_SIGMA)
    values = _colour(rgb) + _edges(smooth) + _glcm(smooth) + _lbp(smooth) + [grey.std() / 255.0] + _faces(smooth)
    out = np.asarray(values, dtype=np.float64)
    if not np.isfinite(out).all():  # a guard against a future bug, not a definition
        bad = [n for n, v in zip(FEATURE_NAMES, out) if not np.isfinite(v)]
        raise FloatingPointError(f"non-finite feature(s) {bad}")
    return out


def extract_bytes(data: bytes, name: str = "image") -> np.ndarray:
    """Features of encoded image bytes; JPEGs are decoded straight at the working resolution."""
    return extract(decode_rgb(data, WORK, name=name))


def _extract_chunk(items: list) -> np.ndarray:
    return np.stack([extract_bytes(bytes(x)) if isinstance(x, (bytes, bytearray, memoryview)) else extract(x)
                     for x in items])


def _worker_chunk(items: list) -> np.ndarray:
    cv2.setNumThreads(1)  # in a worker process: the processes are the parallelism, threads would oversubscribe
    return _extract_chunk(items)


def default_workers() -> int:
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)


def extract_many(items, progress: bool = True, workers: int | None = None, chunk: int = 32) -> np.ndarray:
    """(N, 25) features of a list of covers (arrays or bytes) or an (N, H, W, 3) array.

    Runs in worker processes (joblib/loky, reused between calls) over all cores. With
    ``workers=None``, fewer than PARALLEL_FROM covers run in this process: starting the workers
    (about a second) would cost more than it saves.
    """
    n = len(items)
    if n == 0:
        return np.zeros((0, len(FEATURE_NAMES)))
    if not workers or workers < 1:
        workers = default_workers() if n >= PARALLEL_FROM else 1
    chunks = [items[s:s + chunk] for s in range(0, n, chunk)]
    bar = progress_bar(total=n, desc="extracting features", unit="cover", disable=not progress, leave=False)
    if workers == 1 or len(chunks) == 1:
        results = map(_extract_chunk, chunks)
    else:
        from joblib import Parallel, delayed
        results = Parallel(n_jobs=min(workers, len(chunks)), return_as="generator")(
            delayed(_worker_chunk)(c) for c in chunks)
    parts = []
    with bar:
        for part in results:
            parts.append(part)
            bar.update(len(part))
    return np.concatenate(parts)


def features_for(covers, progress: bool = True) -> pd.DataFrame:
    """The feature table of a CoverSet (rows in cover order, index sample_id), cached on disk."""
    path = cache_root() / f"features-v{FEATURE_VERSION}-w{WORK}-{covers.digest[:24]}.parquet"
    table = _cached_table(path, covers)
    if table is not None:
        return table
    table = pd.DataFrame(extract_many(covers.images, progress=progress), columns=FEATURE_NAMES,
                         index=pd.Index([str(i) for i in covers.ids], name="sample_id"))
    # atomic under a unique name; the checksum sidecar, written after, marks the entry complete
    cachefiles.write_atomic(path, lambda f: table.to_parquet(f))
    cachefiles.write_atomic(path.with_suffix(".sha256"), lambda f: f.write(cachefiles.sha256_file(path).encode()))
    return table


def _cached_table(path, covers) -> pd.DataFrame | None:
    """The cached table when it is intact and matches the covers; None (with a warning) otherwise."""
    if not path.exists():
        return None
    try:
        cachefiles.verify(path, path.with_suffix(".sha256").read_text().strip()
                          if path.with_suffix(".sha256").exists() else None)
        table = pd.read_parquet(path)
    except Exception as exc:  # Damaged, or pyarrow's own error types
        cachefiles.rebuilding(path, exc)
        return None
    if list(table.columns) == FEATURE_NAMES and list(table.index) == [str(i) for i in covers.ids]:
        log.info("features from cache %s", path)
        return table
    log.warning("feature cache %s does not match the covers; recomputing", path)
    return None
