"""Richer descriptors of a cover for the strongest offline model, the ensemble (:mod:`genreclf.models.ensemble`).

The 25 features summarise a cover in 25 numbers; on real covers a classifier gains from seeing
more of the same kinds of evidence, kept coarse enough for a few hundred covers per genre:

* colour:  a joint HSV histogram (8 hue x 3 saturation x 3 value bins) and the mean/std of L*a*b*
           in a 4 x 4 grid (where on the cover the colour sits: dark borders, a bright centre ...);
* shape:   HOG of the 64 px grey cover (16 px cells, 2 x 2 blocks): layout of strong edges, lettering;
* texture: uniform LBP histograms at two radii and the Canny edge density in a 4 x 4 grid;
* layout:  Gabor energy at 4 wavelengths x 6 orientations averaged in a 4 x 4 grid - the GIST
           descriptor of scene recognition (Oliva & Torralba, 2001), simplified: where on the cover
           fine or coarse structure of which direction sits (lettering, a horizon, a face, a logo);
* the 25 hand-crafted features (faces among them), computed by :mod:`genreclf.features.cover25`.

Every descriptor is computed on the cover resized to ``SIDE`` px, so a cover's bytes give the same
vector at training and at prediction time whatever their resolution.
"""
from __future__ import annotations

import hashlib
import logging
import os

import cv2
import numpy as np
from joblib import Parallel, delayed
from scipy import fft
from skimage.feature import hog, local_binary_pattern

from genreclf.data.covers import CoverSet, cache_root
from genreclf.data.images import as_rgb
from genreclf.features.cover25 import FEATURE_VERSION, default_workers, extract

log = logging.getLogger(__name__)

DESCRIPTOR_VERSION = 2  # bump when a definition changes, so cached tables are recomputed
SIDE = 128              # px: the working resolution of every descriptor below
GRID = 4                # spatial cells per side for the colour, edge and Gabor layout
WAVELENGTHS = (4, 8, 16, 32)  # px at SIDE: from stroke-thin detail to a quarter of the cover
ORIENTATIONS = 6


def _hsv_histogram(rgb: np.ndarray) -> np.ndarray:
    hsv = cv2.cvtColor(rgb, cv2.COLOR_RGB2HSV_FULL)
    hist = cv2.calcHist([hsv], [0, 1, 2], None, [8, 3, 3], [0, 256, 0, 256, 0, 256]).ravel()
    return hist / max(hist.sum(), 1.0)


def _grid(values: np.ndarray) -> list[np.ndarray]:
    step = values.shape[0] // GRID
    return [values[i * step:(i + 1) * step, j * step:(j + 1) * step] for i in range(GRID) for j in range(GRID)]


def _lab_layout(rgb: np.ndarray) -> np.ndarray:
    lab = cv2.cvtColor(rgb, cv2.COLOR_RGB2LAB).astype(np.float32) / 255.0
    return np.concatenate([np.concatenate([c.reshape(-1, 3).mean(0), c.reshape(-1, 3).std(0)]) for c in _grid(lab)])


def _texture(grey: np.ndarray) -> np.ndarray:
    parts = []
    for points, radius in ((8, 1), (16, 2)):
        lbp = local_binary_pattern(grey, P=points, R=radius, method="uniform")
        hist = np.bincount(lbp.astype(np.int64).ravel(), minlength=points + 2).astype(np.float64)
        parts.append(hist / hist.sum())
    edges = cv2.Canny(cv2.GaussianBlur(grey, (0, 0), 1.0), 100, 200) > 0
    parts.append(np.array([c.mean() for c in _grid(edges)]))
    return np.concatenate(parts)


def _gabor_bank(side: int) -> np.ndarray:
    """(filters, side, side) transfer functions of quadrature Gabor filters, in the frequency domain.

    Each is the Fourier transform of a Gabor filter with sigma = 0.56 wavelength (about one octave of
    bandwidth) and aspect 0.5 (twice as long along the stripes as across). It is one-sided: only
    frequencies around +f0 pass, so the filtered image is complex and its modulus is the energy of the
    even and odd filter pair at once - no phase, hence no dependence on where a stripe starts.
    """
    freq = fft.fftfreq(side)
    fy, fx = np.meshgrid(freq, freq, indexing="ij")
    bank = []
    for wavelength in WAVELENGTHS:
        sigma = 1.0 / (2 * np.pi * 0.56 * wavelength)  # the spatial sigma 0.56 * wavelength, in frequency
        for k in range(ORIENTATIONS):
            theta = k * np.pi / ORIENTATIONS
            along = fx * np.cos(theta) + fy * np.sin(theta)
            across = -fx * np.sin(theta) + fy * np.cos(theta)
            bank.append(np.exp(-((along - 1.0 / wavelength) ** 2) / (2 * sigma ** 2)
                               - across ** 2 / (2 * (0.5 * sigma) ** 2)))
    return np.stack(bank).astype(np.float32)


_GABOR = _gabor_bank(SIDE)


def gabor_layout(grey: np.ndarray) -> np.ndarray:
    """(filters x GRID x GRID,) mean Gabor energy per filter and cell of a SIDE x SIDE grey cover.

    Filter-major: wavelength, then orientation (0 = stripes varying along x), then cells row by row.
    """
    g = grey.astype(np.float32) / 255.0
    # contrast-normalised, so a darker or flatter print of the same cover gives the same layout
    g = (g - g.mean()) / (g.std() + 1e-3)
    # filtering in the frequency domain is circular: at the longest wavelength the border cells see a
    # little of the opposite border - the same for every cover, and 24 filters cost one FFT each way
    energy = np.abs(fft.ifft2(fft.fft2(g)[None] * _GABOR, workers=1))
    cell = SIDE // GRID
    return energy.reshape(len(_GABOR), GRID, cell, GRID, cell).mean(axis=(2, 4)).ravel()


def _shape(grey: np.ndarray) -> np.ndarray:
    small = cv2.resize(grey, (64, 64), interpolation=cv2.INTER_AREA)
    return hog(small, orientations=9, pixels_per_cell=(16, 16), cells_per_block=(2, 2), feature_vector=True)


def describe(image) -> np.ndarray:
    """The descriptor vector of one cover (RGB/grey array of any size, or encoded bytes)."""
    full = as_rgb(image, name="cover")
    rgb = as_rgb(full, SIDE)
    grey = cv2.cvtColor(rgb, cv2.COLOR_RGB2GRAY)
    # the 25 features at the cover's own resolution (they bring it to their working size themselves);
    # last, because the vote's features forest reads the final 25 columns (models.ensemble.vote.FEATURES)
    out = np.concatenate([_hsv_histogram(rgb), _lab_layout(rgb), _shape(grey), _texture(grey), gabor_layout(grey),
                          extract(full)])
    return np.nan_to_num(out.astype(np.float64), nan=0.0, posinf=0.0, neginf=0.0)


def describe_many(images) -> np.ndarray:
    """(N, D) descriptors of a sequence of covers (arrays or bytes)."""
    return np.stack([describe(im) for im in images]) if len(images) else np.zeros((0, N_DESCRIPTORS))


N_DESCRIPTORS = len(describe(np.zeros((SIDE, SIDE, 3), dtype=np.uint8)))


def descriptors_for(covers: CoverSet, progress: bool = True) -> np.ndarray:
    """(N, D) descriptors of a CoverSet's covers, cached on disk under the covers' content."""
    key = hashlib.sha256("|".join(covers.content).encode() + str(covers.images.shape).encode()).hexdigest()
    # the descriptors hold the 25 features: a new feature version is a new table, not a stale cached one
    path = cache_root() / f"descriptors-v{DESCRIPTOR_VERSION}-f{FEATURE_VERSION}-{key[:24]}.npy"
    if path.exists():
        log.info("descriptors from cache %s", path)
        return np.load(path)
    table = _describe_parallel(covers.images, progress)
    tmp = path.with_suffix(f".{os.getpid()}.tmp.npy")
    np.save(tmp, table)
    os.replace(tmp, path)  # atomic: concurrent runs never read a half-written table
    return table


def _describe_parallel(images, progress: bool) -> np.ndarray:
    chunks = [images[s:s + 64] for s in range(0, len(images), 64)]
    if len(chunks) <= 1 or default_workers() == 1:
        return describe_many(images)
    parts = Parallel(n_jobs=min(default_workers(), len(chunks)))(delayed(describe_many)(np.asarray(c)) for c in chunks)
    return np.concatenate(parts)
