"""The Gabor layout inside the ensemble's descriptors: it finds stripes by their wavelength,
direction and place on the cover, and ignores brightness and contrast."""
from __future__ import annotations

import numpy as np
import pytest

from genreclf.features.descriptors import GRID, N_DESCRIPTORS, ORIENTATIONS, SIDE, WAVELENGTHS, describe, gabor_layout


def stripes(wavelength: float, vertical: bool = True) -> np.ndarray:
    x = np.arange(SIDE)
    wave = 128 + 100 * np.sin(2 * np.pi * x / wavelength)
    grey = np.tile(wave, (SIDE, 1)) if vertical else np.tile(wave[:, None], (1, SIDE))
    return grey.astype(np.uint8)


def per_filter(layout: np.ndarray) -> np.ndarray:
    return layout.reshape(len(WAVELENGTHS), ORIENTATIONS, GRID, GRID)


@pytest.mark.parametrize("wavelength", WAVELENGTHS)
@pytest.mark.parametrize("vertical, orientation", [(True, 0), (False, ORIENTATIONS // 2)])
def test_the_strongest_filter_matches_the_stripes(wavelength, vertical, orientation):
    energy = per_filter(gabor_layout(stripes(wavelength, vertical))).mean(axis=(2, 3))
    assert np.unravel_index(energy.argmax(), energy.shape) == (WAVELENGTHS.index(wavelength), orientation)


def test_the_layout_says_where_the_structure_is():
    grey = np.full((SIDE, SIDE), 128, np.uint8)
    half = SIDE // 2
    grey[:half, :half] = stripes(8)[:half, :half]  # stripes only in the top-left quarter
    cells = per_filter(gabor_layout(grey))[WAVELENGTHS.index(8), 0]
    assert cells[:2, :2].min() > 5 * cells[2:, 2:].max()


def test_brightness_and_contrast_do_not_change_it():
    rng = np.random.default_rng(0)
    grey = rng.integers(60, 190, (SIDE, SIDE)).astype(np.float64)
    flatter = (0.5 * grey + 40).round()
    original, flat = gabor_layout(grey.astype(np.uint8)), gabor_layout(flatter.astype(np.uint8))
    assert np.allclose(original, flat, rtol=0.05, atol=0.02)


def test_describe_holds_the_layout_of_the_cover_at_its_working_size():
    cover = np.repeat(stripes(16)[:, :, None], 3, axis=2)
    big = np.kron(cover, np.ones((3, 3, 1), np.uint8))  # the same cover at three times the size
    small_vec, big_vec = describe(cover), describe(big)
    assert small_vec.shape == big_vec.shape == (N_DESCRIPTORS,)
    layout = gabor_layout(stripes(16))
    at = [i for i in range(N_DESCRIPTORS - len(layout) + 1) if np.allclose(small_vec[i:i + len(layout)], layout)]
    assert len(at) == 1
    assert np.allclose(big_vec[at[0]:at[0] + len(layout)], layout, rtol=0.05, atol=0.02)
