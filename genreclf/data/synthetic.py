"""Synthetic album covers whose statistics depend on the genre.

For tests, offline demos and benchmarks: deterministic for (genre, index, seed), encoded as JPEG
like the real dataset, and different per genre in the four things the baseline looks at - colour
(hue, saturation, brightness), edges (number and straightness of strokes), texture (noise grain)
and faces (how often a face-like oval with eyes appears). Each cover also has random variation, so
the task is learnable but not trivial.
"""
from __future__ import annotations

import hashlib

import numpy as np
from PIL import Image, ImageDraw, ImageFilter

from genreclf.data.images import encode

DEFAULT_PER_GENRE = 100
SIZE = 300


def genre_style(genre: str) -> dict[str, float]:
    """Stable per-genre parameters derived from the genre's name (works for any genre list)."""
    h = hashlib.sha256(genre.lower().encode()).digest()
    u = [b / 255.0 for b in h[:8]]
    return {
        "hue": u[0],                       # dominant hue in [0, 1)
        "sat": 0.2 + 0.75 * u[1],          # saturation
        "val": 0.25 + 0.65 * u[2],         # brightness
        "strokes": int(2 + 28 * u[3]),     # edge density
        "grain": 2.0 + 30.0 * u[4],        # texture noise amplitude
        "face_p": 0.9 * u[5],              # probability of a face-like shape
        "circles": u[6],                   # share of round vs straight strokes
        "contrast": 0.3 + 0.7 * u[7],
    }


def _hsv_to_rgb(h: float, s: float, v: float) -> tuple[int, int, int]:
    import colorsys
    r, g, b = colorsys.hsv_to_rgb(h % 1.0, min(max(s, 0), 1), min(max(v, 0), 1))
    return int(r * 255), int(g * 255), int(b * 255)


def make_cover(genre: str, index: int, seed: int = 42, size: int = SIZE) -> np.ndarray:
    """Render one synthetic cover as an RGB uint8 array."""
    st = genre_style(genre)
    key = int.from_bytes(hashlib.sha256(f"{genre.lower()}|{index}|{seed}".encode()).digest()[:8], "little")
    rng = np.random.default_rng(key)
    hue = st["hue"] + rng.normal(0, 0.06)
    base = _hsv_to_rgb(hue, st["sat"] + rng.normal(0, 0.1), st["val"] + rng.normal(0, 0.1))
    accent = _hsv_to_rgb(hue + 0.5 + rng.normal(0, 0.1), st["sat"], 1.0 - st["val"] * st["contrast"])
    # vertical gradient background
    t = np.linspace(0, 1, size)[:, None, None]
    top, bottom = np.array(base, float), np.array(base, float) * (0.5 + 0.5 * rng.random())
    bg = (top * (1 - t) + bottom * t) * np.ones((1, size, 1))
    img = Image.fromarray(np.clip(bg, 0, 255).astype(np.uint8))
    draw = ImageDraw.Draw(img)
    n = max(1, int(st["strokes"] * (0.6 + 0.8 * rng.random())))
    for _ in range(n):
        x0, y0, x1, y1 = rng.integers(0, size, 4)
        width = int(rng.integers(1, 6))
        if rng.random() < st["circles"]:
            r = int(rng.integers(8, size // 4))
            draw.ellipse([x0 - r, y0 - r, x0 + r, y0 + r], outline=accent, width=width)
        else:
            draw.line([int(x0), int(y0), int(x1), int(y1)], fill=accent, width=width)
    if rng.random() < st["face_p"]:
        _draw_face(draw, rng, size)
    arr = np.asarray(img.filter(ImageFilter.GaussianBlur(0.6)), dtype=np.float64)
    arr += rng.normal(0, st["grain"], arr.shape[:2])[..., None]  # luminance grain = texture
    return np.clip(arr, 0, 255).astype(np.uint8)


def _draw_face(draw: ImageDraw.ImageDraw, rng: np.random.Generator, size: int) -> None:
    w = int(rng.integers(size // 4, size // 2))
    h = int(w * 1.3)
    cx, cy = int(rng.integers(w // 2, size - w // 2)), int(rng.integers(h // 2, size - h // 2))
    skin = (int(rng.integers(150, 235)), int(rng.integers(110, 190)), int(rng.integers(80, 160)))
    draw.ellipse([cx - w // 2, cy - h // 2, cx + w // 2, cy + h // 2], fill=skin)
    ex, ey, er = w // 5, h // 8, max(2, w // 12)
    for sx in (-1, 1):
        draw.ellipse([cx + sx * ex - er, cy - ey - er, cx + sx * ex + er, cy - ey + er], fill=(30, 25, 20))
        draw.line([cx + sx * ex - 2 * er, cy - ey - 2 * er, cx + sx * ex + 2 * er, cy - ey - 2 * er],
                  fill=(40, 30, 25), width=max(1, er // 2))
    draw.line([cx, cy - ey // 2, cx, cy + h // 10], fill=(120, 80, 60), width=max(1, er // 2))
    draw.arc([cx - w // 5, cy + h // 10, cx + w // 5, cy + h // 4], 0, 180, fill=(90, 30, 30), width=max(2, er // 2))


def iter_covers(genres: list[str], per_genre: int = DEFAULT_PER_GENRE, seed: int = 42):
    """Yield (sample_id, genre, jpeg_bytes) for every synthetic cover, genre by genre."""
    for genre in genres:
        for i in range(per_genre):
            yield f"synthetic/{genre}/{i:05d}", genre, encode(make_cover(genre, i, seed), "JPEG", 92)
