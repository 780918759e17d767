"""The 25 hand-crafted computer-vision features of the Random Forest baseline.

Four kinds, as in the course project this started from: colour, edges, texture, faces. Beyond a few
global statistics, the features say where things sit on a cover (a lit centre, a plain frame,
lettering at the top, a symmetric layout) and which local patterns dominate (grain, plain blocks,
corners): on real album covers that is what a forest can use. docs/features.md has how the 25 were
chosen, the ablation, the accuracy against the seed's features and the history of the set.

Every cover is first brought to ONE canonical working resolution (``WORK`` x ``WORK``, area
resampling), and every feature is defined there, so a 300x300 and a 640x640 copy of the same cover
give nearly the same values. The edge features, the LBP shares and the face detector read the grey
image lightly smoothed with a Gaussian of sigma 0.5 px: enough to damp aliasing, light enough to keep
the fine detail that carries genre on real covers. Every feature is finite for every image (blank,
single-colour, tiny, grayscale): undefined cases have a documented value, never a NaN.

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
FEATURE_VERSION = 3   # bump when a definition changes, so cached tables are recomputed
SMOOTH_SIGMA = 0.5    # px at WORK: light Gaussian pre-smoothing of grey for the edge, LBP and face features
FACE_MIN = 32         # px at WORK: a face at least 1/5 of the cover's side (a subject, not a crowd)
FACE_SCALE = 1.25     # detector scale step: a finer step finds a few more faces at a much higher cost
FACE_NEIGHBOURS = 3   # detections that must overlap to count as a face
PARALLEL_FROM = 256   # covers: below this, extract_many(workers=None) stays in-process

FEATURE_GROUPS: dict[str, list[str]] = {
    "colour": ["val_std", "colourfulness", "dark_share", "yellow_share", "lightness_mean", "lab_a_std",
               "lab_b_mean", "lab_b_std", "centre_minus_border_val", "border_grey_mean"],
    "edges": ["edge_density", "edge_density_centre", "edge_density_top", "diagonal_grad_share", "grad_p90",
              "mirror_asymmetry"],
    "texture": ["lbp_spot_share", "lbp_corner_share", "lbp_flat_share", "lbp_entropy", "fine_detail_share",
                "block_contrast_std", "flat_block_share"],
    "faces": ["face_count", "face_area_share"],
}
FEATURE_NAMES: list[str] = [name for names in FEATURE_GROUPS.values() for name in names]
GROUP_OF: dict[str, str] = {name: group for group, names in FEATURE_GROUPS.items() for name in names}
FEATURE_DOCS: dict[str, str] = {
    "val_std": "standard deviation of HSV value (brightness)",
    "colourfulness": "Hasler & Suesstrunk colourfulness: std_rgyb + 0.3 * mean_rgyb on the 0-255 scale",
    "dark_share": "share of pixels with value < 0.2",
    "yellow_share": "share of chromatic pixels (S, V >= 0.2) with a hue of 30-90 degrees (orange to yellow-green)",
    "lightness_mean": "mean CIE L* (lightness), OpenCV's 8-bit L*a*b* scaled to [0, 1]",
    "lab_a_std": "standard deviation of a* (green-red axis) in [0, 1]",
    "lab_b_mean": "mean b* (blue-yellow axis) in [0, 1]; 0.5 is neutral",
    "lab_b_std": "standard deviation of b* in [0, 1]",
    "centre_minus_border_val": "mean HSV value of the central half (middle 50% of each side) minus that of the rest",
    "border_grey_mean": "mean grey of the outer frame, 1/20 of the side wide, in [0, 1]",
    "edge_density": "share of Canny edge pixels (low thresholds 30/90 on smoothed 8-bit grey)",
    "edge_density_centre": "share of Canny edge pixels (thresholds 100/200) in the central half",
    "edge_density_top": "share of Canny edge pixels (thresholds 100/200) in the top third (where titles often sit)",
    "diagonal_grad_share": "share of Sobel gradient magnitude oriented within 15 degrees of a diagonal (0 when flat)",
    "grad_p90": "90th percentile of the Sobel gradient magnitude of smoothed grey in [0, 1]",
    "mirror_asymmetry": "mean absolute difference between grey and its left-right mirror image, in [0, 1]",
    "lbp_spot_share": "share of pixels whose LBP(8,1) has no neighbour as bright as the centre: bright spots",
    "lbp_corner_share": "share of pixels whose LBP(8,1) is uniform with two neighbours at least as bright: corners",
    "lbp_flat_share": "share of pixels whose LBP(8,1) has every neighbour at least as bright: flat areas, dark spots",
    "lbp_entropy": "entropy of the rotation-invariant uniform LBP(8,1) histogram (10 bins) / log 10 of grey at 80 px",
    "fine_detail_share": "share of grey's spectral power (mean removed) above 40 cycles per side (0 when flat)",
    "block_contrast_std": "standard deviation, over the 8 x 8 px blocks, of each block's grey standard deviation",
    "flat_block_share": "share of 8 x 8 px blocks whose grey standard deviation is below 0.02 (plain areas)",
    "face_count": "number of frontal faces (at least 1/5 of the cover's side) found by OpenCV's Haar cascade "
                  "on smoothed grey",
    "face_area_share": "area of the largest face divided by the cover's area (0 without faces)",
}
assert len(FEATURE_NAMES) == 25 and set(FEATURE_DOCS) == set(FEATURE_NAMES)


def _entropy(counts: np.ndarray) -> float:
    """Shannon entropy of a histogram, normalised to [0, 1] by log(#bins); 0 for an empty one."""
    total = counts.sum()
    if total <= 0:
        return 0.0
    p = counts[counts > 0] / total
    return max(0.0, float(-(p * np.log(p)).sum() / math.log(len(counts))))  # max: no -0.0 for one bin


def canonical(image) -> np.ndarray:
    """Any RGB/grey array (or encoded bytes) -> WORK x WORK x 3 uint8, area-resampled."""
    rgb = as_rgb(image)
    if rgb.shape[:2] != (WORK, WORK):
        rgb = cv2.resize(rgb, (WORK, WORK), interpolation=cv2.INTER_AREA)
    return rgb


# OpenCV's 8-bit full-range hue: 0-255 = 0-360 degrees; 30 to 90 degrees = 21.3 to 64
_YELLOW = (22, 64)
CENTRE = slice(WORK // 4, 3 * WORK // 4)   # the central half of each side
FRAME = WORK // 20                         # px: width of the border frame
BLOCK = 8                                  # px: blocks for the local-contrast features


def _centre_mask() -> np.ndarray:
    mask = np.zeros((WORK, WORK), bool)
    mask[CENTRE, CENTRE] = True
    return mask


_CENTRE_MASK = _centre_mask()
_FRAME_MASK = np.ones((WORK, WORK), bool)
_FRAME_MASK[FRAME:-FRAME, FRAME:-FRAME] = False


def _colour(rgb: np.ndarray, grey: np.ndarray) -> list[float]:
    hsv = cv2.cvtColor(rgb, cv2.COLOR_RGB2HSV_FULL)
    h, s8, v8 = hsv[..., 0], hsv[..., 1], hsv[..., 2]
    f = rgb.astype(np.float32)
    rg, yb = f[..., 0] - f[..., 1], 0.5 * (f[..., 0] + f[..., 1]) - f[..., 2]
    colourful = math.hypot(rg.std(), yb.std()) + 0.3 * math.hypot(rg.mean(), yb.mean())
    chroma = (s8 >= 51) & (v8 >= 51)  # S, V >= 0.2 on the 8-bit scale
    yellow = chroma & (h >= _YELLOW[0]) & (h < _YELLOW[1])
    lab_mean, lab_std = (x.ravel() / 255.0 for x in cv2.meanStdDev(cv2.cvtColor(rgb, cv2.COLOR_RGB2LAB)))
    n = float(h.size)
    # where the light sits: a lit centre on a dark ground, a white frame, ... (a cover's layout)
    centre_gap = (float(v8[_CENTRE_MASK].mean()) - float(v8[~_CENTRE_MASK].mean())) / 255.0
    return [float(cv2.meanStdDev(v8)[1][0, 0]) / 255.0, colourful, np.count_nonzero(v8 < 51) / n,
            np.count_nonzero(yellow) / n, lab_mean[0], lab_std[1], lab_mean[2], lab_std[2], centre_gap,
            float(grey[_FRAME_MASK].mean()) / 255.0]


_P90 = int(0.9 * (WORK * WORK - 1))  # the 90th percentile's rank (numpy's 'lower' method)


def _edges(smooth: np.ndarray, grey: np.ndarray) -> list[float]:
    strong = cv2.Canny(smooth, 100, 200) > 0
    g = smooth.astype(np.float32) / 255.0
    gx, gy = cv2.Sobel(g, cv2.CV_32F, 1, 0, ksize=3), cv2.Sobel(g, cv2.CV_32F, 0, 1, ksize=3)
    mag, angle = cv2.cartToPolar(gx, gy, angleInDegrees=True)
    a = angle % 180.0  # direction without sign
    diagonal = (np.abs(a - 45.0) < 15.0) | (np.abs(a - 135.0) < 15.0)
    total = float(mag.sum())
    grey01 = grey.astype(np.float32) / 255.0
    return [np.count_nonzero(cv2.Canny(smooth, 30, 90)) / smooth.size, float(strong[CENTRE, CENTRE].mean()),
            float(strong[:WORK // 3].mean()), float(mag[diagonal].sum()) / total if total > 1e-9 else 0.0,
            float(np.partition(mag.ravel(), _P90)[_P90]), float(np.abs(grey01 - grey01[:, ::-1]).mean())]


# the 8 neighbours of LBP(8, 1), in circular order
_RING = ((-1, -1), (-1, 0), (-1, 1), (0, 1), (1, 1), (1, 0), (1, -1), (0, -1))


def _lbp_table() -> np.ndarray:
    """For each 8-bit pattern: its rotation-invariant uniform code (0-8 ones, 9 = not uniform)."""
    bits = (np.arange(256)[:, None] >> np.arange(8)) & 1
    uniform = (bits != np.roll(bits, 1, axis=1)).sum(axis=1) <= 2  # at most 2 bit transitions
    return np.where(uniform, bits.sum(axis=1), 9).astype(np.uint8)


_LBP_CODE = _lbp_table()


def _lbp_hist(grey: np.ndarray) -> np.ndarray:
    """Shares of the 10 rotation-invariant uniform LBP(8, 1) codes (bit set: neighbour >= centre)."""
    H, W = grey.shape
    c = grey[1:-1, 1:-1]
    pattern = np.zeros(c.shape, dtype=np.uint8)
    for k, (dy, dx) in enumerate(_RING):
        pattern |= (grey[1 + dy:H - 1 + dy, 1 + dx:W - 1 + dx] >= c).astype(np.uint8) << k
    return np.bincount(_LBP_CODE[pattern].ravel(), minlength=10) / float(pattern.size)


# spatial frequency (cycles per side) of each cell of cv2.dft's unshifted WORK x WORK spectrum
_FREQ = np.fft.fftfreq(WORK) * WORK
_HIGH = np.hypot(_FREQ[:, None], _FREQ[None, :]) > WORK / 4


def _texture(smooth: np.ndarray, grey: np.ndarray) -> list[float]:
    codes = _lbp_hist(smooth)
    # the LBP histogram's entropy at half size: coarser texture (print, paint strokes) than the shares
    half = cv2.resize(grey, (WORK // 2, WORK // 2), interpolation=cv2.INTER_AREA)
    g = grey.astype(np.float32) / 255.0
    spectrum = cv2.dft(g - g.mean(), flags=cv2.DFT_COMPLEX_OUTPUT)
    power = spectrum[..., 0] ** 2 + spectrum[..., 1] ** 2
    total = float(power.sum())
    blocks = g.reshape(WORK // BLOCK, BLOCK, WORK // BLOCK, BLOCK).std(axis=(1, 3))
    return [codes[0], codes[2], codes[8], _entropy(_lbp_hist(half)),
            float(power[_HIGH].sum()) / total if total > 1e-12 else 0.0,
            float(blocks.std()), float((blocks < 0.02).mean())]


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
    largest = max((w * h for _, _, w, h in found), default=0) / float(grey.size)
    return [float(len(found)), largest]


def extract(image) -> np.ndarray:
    """The 25 features (FEATURE_NAMES order) of one cover: an RGB/grey array of any size, or bytes."""
    rgb = canonical(image)
    grey = cv2.cvtColor(rgb, cv2.COLOR_RGB2GRAY)
    # pixel-level statistics (LBP above all) and borderline face detections otherwise depend on how
    # the cover was resampled to WORK (a 300 px and a 640 px source alias differently)
    smooth = cv2.GaussianBlur(grey, (0, 0), SMOOTH_SIGMA)
    values = _colour(rgb, grey) + _edges(smooth, grey) + _texture(smooth, grey) + _faces(smooth)
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
