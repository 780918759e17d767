"""Decoding covers: any bytes a user or a dataset hands us -> an RGB uint8 array, or a clear error.

Every path into the project (dataset loading, both pyfunc models, the demo, `genreclf predict`)
decodes through :func:`decode_rgb`, so the same cover gives the same pixels everywhere.
"""
from __future__ import annotations

import io
import warnings

import numpy as np
from PIL import Image, ImageFile, ImageOps, UnidentifiedImageError

from genreclf.errors import UserError

# Refuse decompression bombs instead of allocating gigabytes: a cover is at most a few thousand
# pixels on a side. PIL raises DecompressionBombError above 2x this limit and warns above 1x; we
# turn the warning into an error too.
MAX_PIXELS = 64_000_000
Image.MAX_IMAGE_PIXELS = MAX_PIXELS // 2
ImageFile.LOAD_TRUNCATED_IMAGES = False  # truncated files are errors, never half-grey covers
# The pixel limit alone lets a 61 KB 16-bit 5600x5600 PNG cost ~0.8 GB: the budget counts bytes, the
# decoded raster at its own depth plus the RGB copy we make of it, checked from the header before
# any pixel is decoded.
MAX_DECODE_BYTES = 128 * 2**20
MAX_FILE_BYTES = 20 * 2**20  # per encoded cover (file or request row): covers are a few MB at most
_BYTES_PER_PIXEL = {"1": 1, "L": 1, "P": 1, "LA": 2, "La": 2, "PA": 2, "RGB": 3, "YCbCr": 3, "LAB": 3,
                    "HSV": 3, "RGBA": 4, "RGBa": 4, "RGBX": 4, "CMYK": 4, "I": 4, "F": 4}


class BadImageError(UserError):
    """The bytes are not a decodable, reasonably sized image."""


def decode_rgb(data: bytes, size: int | None = None, *, name: str = "image") -> np.ndarray:
    """Decode encoded image bytes to an (H, W, 3) uint8 RGB array.

    Handles L, LA, P (palette, with transparency), RGBA, CMYK, I;16 and friends: alpha is
    composited on white (covers are shown on white), 16-bit grey is scaled to 8 bits, EXIF
    orientation is applied. With ``size``, the cover is resized (squashed, covers are ~square) to
    ``size`` x ``size``; JPEG decoding then uses DCT scaling ("draft") so a large JPEG is never fully
    decoded just to be shrunk.
    """
    if isinstance(data, memoryview):
        data = data.tobytes()
    if not isinstance(data, (bytes, bytearray)):
        raise BadImageError(f"{name}: expected encoded image bytes, got {type(data).__name__}")
    if len(data) == 0:
        raise BadImageError(f"{name}: empty input (0 bytes)")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            img = Image.open(io.BytesIO(data))
            _check_budget(img, name)
            if size and img.format == "JPEG":
                img.draft("RGB", (size, size))  # decode at >= size via DCT scaling
            img.load()
            img = ImageOps.exif_transpose(img)
            img = _to_rgb(img)
            if size:
                img = img.resize((size, size), Image.BILINEAR, reducing_gap=2.0)
            return np.asarray(img, dtype=np.uint8)
    except BadImageError:
        raise
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
        raise BadImageError(f"{name}: refused, image too large ({exc})") from None
    except UnidentifiedImageError:
        raise BadImageError(f"{name}: not a decodable image (unknown or unsupported format)") from None
    except Exception as exc:
        # PIL and its plugins signal corrupt data with anything: OSError, SyntaxError, ValueError, but
        # also RuntimeError (AVIF "Failed to decode frame"), NotImplementedError (DDS variants), ...
        # Every one of them is this file's problem, never the run's.
        why = str(exc).splitlines()[0][:200] if str(exc) else ""
        raise BadImageError(f"{name}: not a decodable image ({type(exc).__name__}: {why})") from None


def decoded_bytes(img: Image.Image) -> int:
    """Bytes the decode of ``img`` holds at its peak: its raster at its own depth plus the RGB copy."""
    w, h = img.size
    mode = img.mode
    bpp = 2 if mode.startswith("I;16") else _BYTES_PER_PIXEL.get(mode, 4)
    return w * h * (bpp + 3)


def _check_budget(img: Image.Image, name: str) -> None:
    w, h = img.size
    if w * h > MAX_PIXELS // 2:
        raise BadImageError(f"{name}: {w}x{h} pixels is too large for a cover (limit {MAX_PIXELS // 2})")
    need = decoded_bytes(img)
    if need > MAX_DECODE_BYTES:
        raise BadImageError(f"{name}: {w}x{h} {img.mode} image needs {need / 2**20:.0f} MiB to decode "
                            f"(limit {MAX_DECODE_BYTES / 2**20:.0f} MiB)")


def _to_rgb(img: Image.Image) -> Image.Image:
    if img.mode.startswith("I;16"):
        # integer scaling (v * 255 // 65535): no float64 copy of a large 16-bit raster
        arr = np.asarray(img).astype(np.uint32)
        img = Image.fromarray((arr * 255 // 65535).astype(np.uint8), "L")
    elif img.mode == "I":
        arr = np.asarray(img, dtype=np.float64)
        hi = 65535.0 if arr.max() > 255 else 255.0
        img = Image.fromarray(np.clip(arr / hi * 255.0, 0, 255).astype(np.uint8), "L")
    elif img.mode == "F":
        arr = np.nan_to_num(np.asarray(img, dtype=np.float64))
        span = float(arr.max() - arr.min()) or 1.0
        img = Image.fromarray(((arr - arr.min()) / span * 255).astype(np.uint8), "L")
    if img.mode == "P":
        img = img.convert("RGBA")
    if img.mode in ("RGBA", "LA", "PA"):
        img = img.convert("RGBA")
        bg = Image.new("RGB", img.size, (255, 255, 255))
        bg.paste(img, mask=img.getchannel("A"))
        return bg
    return img.convert("RGB")


def encode(rgb: np.ndarray, fmt: str = "PNG", quality: int = 90) -> bytes:
    """Encode an RGB array (for tests, synthetic covers and input examples)."""
    buf = io.BytesIO()
    Image.fromarray(np.asarray(rgb, dtype=np.uint8)).save(buf, format=fmt, quality=quality)
    return buf.getvalue()


def as_rgb(obj, size: int | None = None, *, name: str = "image") -> np.ndarray:
    """Accept encoded bytes or an already-decoded array (H, W[, 3|4]) and return RGB uint8."""
    if isinstance(obj, (bytes, bytearray, memoryview)):
        return decode_rgb(bytes(obj), size, name=name)
    if isinstance(obj, np.ndarray):
        arr = obj
        if arr.ndim == 2:
            arr = np.repeat(arr[..., None], 3, axis=2)
        if arr.ndim != 3 or arr.shape[2] not in (3, 4) or min(arr.shape[:2]) < 1:
            raise BadImageError(f"{name}: array of shape {obj.shape} is not an image (H, W, 3)")
        arr = arr[..., :3]
        if arr.dtype != np.uint8:
            scale = 255.0 if np.issubdtype(arr.dtype, np.floating) and arr.max() <= 1.0 else 1.0
            arr = np.clip(np.nan_to_num(arr.astype(np.float64)) * scale, 0, 255).astype(np.uint8)
        if size and arr.shape[:2] != (size, size):
            arr = np.asarray(Image.fromarray(arr).resize((size, size), Image.BILINEAR, reducing_gap=2.0))
        return np.ascontiguousarray(arr)
    raise BadImageError(f"{name}: expected encoded image bytes or an RGB array, got {type(obj).__name__}")
