"""Decoding covers: any bytes a user or a dataset hands us -> an RGB uint8 array, or a clear error.

Every path into the project (dataset loading, both pyfunc models, the demo, `genreclf predict`)
decodes through :func:`decode_rgb`, so the same cover gives the same pixels everywhere.

Memory is counted before any pixel is decoded (:func:`decode_cost`): the raster at its mode's bytes, the
decoder's own buffer where it keeps one, and every copy the conversion to RGB uint8 and the resize make.
The conversion runs in bands of rows, so its temporaries stay a few MiB whatever the cover's size.
"""
from __future__ import annotations

import io
import warnings

import numpy as np
from PIL import Image, ImageFile, PngImagePlugin, UnidentifiedImageError

from genreclf.data.decode_limits import MAX_DECODE_BYTES, POOL, DecodeTimeout, check_time
from genreclf.errors import UserError

__all__ = ["MAX_DECODE_BYTES", "MAX_FILE_BYTES", "MAX_PIXELS", "BadImageError", "as_rgb", "decode_cost",
           "decode_rgb", "encode"]

# Refuse decompression bombs instead of allocating gigabytes: a cover is at most a few thousand
# pixels on a side. PIL raises DecompressionBombError above 2x this limit and warns above 1x; we
# turn the warning into an error too.
MAX_PIXELS = 64_000_000
Image.MAX_IMAGE_PIXELS = MAX_PIXELS // 2
ImageFile.LOAD_TRUNCATED_IMAGES = False  # truncated files are errors, never half-grey covers
MAX_FILE_BYTES = 20 * 2**20  # per encoded cover (file or request row): covers are a few MB at most
# Only the formats covers come in: every other Pillow plugin (EPS runs Ghostscript, ICO decodes an
# embedded PNG while opening, PSD/DDS/...) is never reached. AVIF is left out: libavif decodes the whole
# frame into a buffer of its own that the header check cannot bound as tightly.
FORMATS = ("JPEG", "PNG", "WEBP", "GIF", "BMP", "TIFF")
# PNG text chunks are read while opening, before any budget check: a cover needs none of size.
PngImagePlugin.MAX_TEXT_CHUNK = 64 * 2**10
PngImagePlugin.MAX_TEXT_MEMORY = 256 * 2**10

BAND_BYTES = 4 * 2**20  # rows converted at once: float64 temporaries of a band stay near this
_RASTER_BPP = {"1": 1, "L": 1, "P": 1}  # Pillow's own storage: 1 byte, 2 for I;16*, else 4 (RGB is RGBX)
_BUFFERED = ("TIFF", "WEBP")  # libtiff (one strip can be the whole image) and libwebp decode into their own copy
_COMPOSITE = ("P", "PA", "LA", "RGBA")  # alpha composited on white: covers are shown on white
_FLIPS = {2: "lr", 3: "180", 4: "ud", 5: "t", 6: "270", 7: "tv", 8: "90"}  # EXIF orientation -> array op


class BadImageError(UserError):
    """The bytes are not a decodable, reasonably sized image."""


def _raster_bpp(mode: str) -> int:
    return 2 if mode.startswith("I;16") else _RASTER_BPP.get(mode, 4)


def _is_gray(mode: str) -> bool:
    return mode in ("1", "L", "I", "F") or mode.startswith("I;16")


def decode_cost(img: Image.Image, size: int | None = None) -> int:
    """Bytes :func:`decode_rgb` holds at its peak for this (opened, not loaded) image."""
    w, h = img.size
    n = w * h
    raster = n * _raster_bpp(img.mode)
    loading = raster if img.format in _BUFFERED else 0
    band = max(BAND_BYTES, w * 40)  # a band is at least one row: float64 copies of it
    if size is None:
        after = 3 * n + band + (3 * n if _orientation(img) else 0)  # the RGB array, and its turned copy
    elif img.mode in ("L", "RGB"):
        after = raster // 2  # resized straight from the raster: the reduce() step is at most 1/4 of it
    else:
        target = n if _is_gray(img.mode) else 4 * n  # the converted raster the resize reads
        after = target + max(band, target // 2)
    return raster + max(loading, after)


def decode_rgb(data: bytes, size: int | None = None, *, name: str = "image") -> np.ndarray:
    """Decode encoded image bytes to an (H, W, 3) uint8 RGB array.

    Handles L, LA, P (palette, with transparency), RGBA, CMYK, I;16, I, F and friends: alpha is
    composited on white, 16-bit grey is scaled to 8 bits, I and F are scaled to their range, EXIF
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
            check_time(name)
            img = Image.open(io.BytesIO(data), formats=FORMATS)
            if size and img.format == "JPEG":
                img.draft("RGB", (size, size))  # decode at >= size via DCT scaling
            need = _check_budget(img, size, name)
            with POOL.reserve(need, name):
                check_time(name)
                return _decode(img, size, name)
    except (BadImageError, DecodeTimeout):
        raise
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
        raise BadImageError(f"{name}: refused, image too large ({exc})") from None
    except UnidentifiedImageError:
        raise BadImageError(f"{name}: not a decodable image (unknown or unsupported format; "
                            f"accepted: {', '.join(FORMATS)})") from None
    except Exception as exc:
        # PIL and its plugins signal corrupt data with anything: OSError, SyntaxError, ValueError, but
        # also RuntimeError, NotImplementedError, ... Every one of them is this file's problem, never the run's.
        why = str(exc).splitlines()[0][:200] if str(exc) else ""
        raise BadImageError(f"{name}: not a decodable image ({type(exc).__name__}: {why})") from None


def _check_budget(img: Image.Image, size: int | None, name: str) -> int:
    w, h = img.size
    if w * h > MAX_PIXELS // 2:
        raise BadImageError(f"{name}: {w}x{h} pixels is too large for a cover (limit {MAX_PIXELS // 2})")
    need = decode_cost(img, size)
    if need > MAX_DECODE_BYTES:
        raise BadImageError(f"{name}: {w}x{h} {img.mode} image needs {need / 2**20:.0f} MiB to decode "
                            f"(limit {MAX_DECODE_BYTES / 2**20:.0f} MiB)")
    return need


def _decode(img: Image.Image, size: int | None, name: str) -> np.ndarray:
    turn = _orientation(img)
    img.load()
    check_time(name)
    gray = _is_gray(img.mode)
    if size is None:
        rgb = np.empty((img.height, img.width, 3), np.uint8)
        for y, band in _bands(img, name):
            rgb[y:y + band.shape[0]] = band[..., None] if gray else band
    else:
        if img.mode not in ("L", "RGB"):
            img = _converted(img, gray, name)
        check_time(name)
        small = np.asarray(img.resize((size, size), Image.BILINEAR, reducing_gap=2.0), dtype=np.uint8)
        rgb = np.repeat(small[..., None], 3, axis=2) if gray else small
    return _turn(rgb, turn)


def _converted(img: Image.Image, gray: bool, name: str) -> Image.Image:
    """The whole image as L (grey sources) or RGB, built band by band."""
    out = Image.new("L" if gray else "RGB", img.size)
    for y, band in _bands(img, name):
        out.paste(Image.fromarray(band), (0, y))
    return out


def _bands(img: Image.Image, name: str):
    """(first row, uint8 grey (rows, W) or RGB (rows, W, 3) array) for consecutive bands of rows."""
    w, h = img.size
    rows = max(1, BAND_BYTES // (w * 8))
    scale = _scaling(img, rows)
    for y in range(0, h, rows):
        check_time(name)
        yield y, _band_to_uint8(img.crop((0, y, w, min(h, y + rows))), scale)


def _scaling(img: Image.Image, rows: int) -> tuple[float, float] | None:
    """(offset, divisor) of the whole image for I and F, whose range decides the grey levels."""
    if img.mode not in ("I", "F"):
        return None
    lo, hi = np.inf, -np.inf
    for y in range(0, img.height, rows):
        arr = np.asarray(img.crop((0, y, img.width, min(img.height, y + rows))), dtype=np.float64)
        if img.mode == "F":
            arr = np.nan_to_num(arr)
        lo, hi = min(lo, float(arr.min())), max(hi, float(arr.max()))
    if img.mode == "I":
        return 0.0, 65535.0 if hi > 255 else 255.0
    return lo, (hi - lo) or 1.0


def _scaled_to_uint8(band: Image.Image, mode: str, scale: tuple[float, float]) -> np.ndarray:
    if mode == "I":
        return np.clip(np.asarray(band, dtype=np.float64) / scale[1] * 255.0, 0, 255).astype(np.uint8)
    arr = np.nan_to_num(np.asarray(band, dtype=np.float64))
    return ((arr - scale[0]) / scale[1] * 255).astype(np.uint8)


def _band_to_uint8(band: Image.Image, scale: tuple[float, float] | None) -> np.ndarray:
    mode = band.mode
    if mode in ("I", "F"):  # their scale comes from a pass over the whole image first
        return _scaled_to_uint8(band, mode, scale if scale is not None else (0.0, 1.0))
    if mode.startswith("I;16"):
        # integer scaling (v * 255 // 65535): no float copy
        return (np.asarray(band).astype(np.uint32) * 255 // 65535).astype(np.uint8)
    if mode in ("1", "L"):
        return np.asarray(band.convert("L"), dtype=np.uint8)
    if mode in _COMPOSITE:
        rgba = band.convert("RGBA")
        bg = Image.new("RGB", rgba.size, (255, 255, 255))
        bg.paste(rgba, mask=rgba.getchannel("A"))
        return np.asarray(bg, dtype=np.uint8)
    return np.asarray(band.convert("RGB"), dtype=np.uint8)


def _orientation(img: Image.Image) -> str | None:
    try:
        return _FLIPS.get(img.getexif().get(0x0112, 1))
    except Exception:  # an unreadable EXIF block is no orientation, as in ImageOps.exif_transpose
        return None


def _turn(rgb: np.ndarray, turn: str | None) -> np.ndarray:
    """The array as ImageOps.exif_transpose would turn the image."""
    ops = {"lr": lambda a: a[:, ::-1], "180": lambda a: a[::-1, ::-1], "ud": lambda a: a[::-1],
           "t": lambda a: a.transpose(1, 0, 2), "270": lambda a: np.rot90(a, -1),
           "tv": lambda a: a.transpose(1, 0, 2)[::-1, ::-1], "90": lambda a: np.rot90(a, 1)}
    return np.ascontiguousarray(ops[turn](rgb)) if turn else rgb


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
