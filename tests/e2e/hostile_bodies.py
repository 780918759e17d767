"""The hostile requests of test_hostile_requests: bodies and covers built to cost a server memory or time.

Each is ``(name, body bytes, headers, limit MB)``: limit is the peak RSS growth the server may show while
answering it (64 MiB for a request refused on size or structure, 1.5 x the decode budget for a decode).
"""
from __future__ import annotations

import base64
import io
import json
import zlib

import numpy as np
import pandas as pd
from PIL import Image, PngImagePlugin

from genreclf.data.decode_limits import MAX_DECODE_BYTES
from genreclf.serving.payloads import payload

JSON = {"Content-Type": "application/json"}
REFUSED_MB = 64
DECODE_MB = 1.5 * MAX_DECODE_BYTES / 2**20


def _json(doc) -> bytes:
    return json.dumps(doc).encode()


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def parquet_bomb() -> bytes:
    """One zstd-compressed cell of 64 MiB zeros: about 2 KB on the wire."""
    buf = io.BytesIO()
    pd.DataFrame({"image": [b"\0" * 64 * 2**20]}).to_parquet(buf, compression="zstd")
    return buf.getvalue()


def padded_inputs() -> bytes:
    """4,097 strings, one long: MLflow's numpy array pads every row to the longest."""
    return _json({"inputs": {"image": ["A" * 16_000] + ["A"] * 4096}})


def many_keys() -> bytes:
    return _json({"dataframe_records": [{f"k{i}": "x" for i in range(5000)}]})


def one_row(nbytes: int) -> bytes:
    return _json({"dataframe_split": {"columns": ["image"], "data": [["A" * nbytes]]}})


def wrong_column(nbytes: int) -> bytes:
    return _json({"dataframe_split": {"columns": ["img"], "data": [[_b64(b"\x89PNG" * (nbytes // 4))]]}})


def deep_json() -> bytes:
    return b'{"inputs": ' + b"[" * 100_000 + b"]" * 100_000 + b"}"


def float_tiff(side: int) -> bytes:
    """A float32 TIFF stored as one deflated strip: libtiff decodes the whole raster into its own buffer."""
    buf = io.BytesIO()
    Image.fromarray(np.zeros((side, side), np.float32), "F").save(
        buf, "TIFF", compression="tiff_adobe_deflate", tiffinfo={278: side})
    return buf.getvalue()


def png16(side: int) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(np.zeros((side, side), np.uint16), "I;16").save(buf, "PNG", optimize=True)
    return buf.getvalue()


def other_format(fmt: str) -> bytes:
    if fmt == "PSD":  # Pillow reads PSD but cannot write it: a minimal 1-channel 8-bit header
        return (b"8BPS" + (1).to_bytes(2, "big") + b"\0" * 6 + (1).to_bytes(2, "big") + (64).to_bytes(4, "big") * 2
                + (8).to_bytes(2, "big") + (1).to_bytes(2, "big") + b"\0" * 12 + b"\0\0" + b"\0" * 4096)
    buf = io.BytesIO()
    Image.new("RGB", (64, 64), (200, 30, 30)).save(buf, fmt)
    return buf.getvalue()


def png_text_bomb() -> bytes:
    """A small PNG with a zTXt chunk that inflates to 64 MiB."""
    info = PngImagePlugin.PngInfo()
    buf = io.BytesIO()
    Image.new("RGB", (32, 32)).save(buf, "PNG", pnginfo=info)
    png = buf.getvalue()
    data = b"Comment\0\0" + zlib.compress(b"\0" * 64 * 2**20, 9)
    chunk = len(data).to_bytes(4, "big") + b"zTXt" + data
    chunk += zlib.crc32(b"zTXt" + data).to_bytes(4, "big")
    return png[:33] + chunk + png[33:]  # after the 8-byte signature and the 25-byte IHDR chunk


def covers(*blobs: bytes) -> bytes:
    return _json(payload(list(blobs)))


def cases() -> list[tuple[str, bytes, dict[str, str], float]]:
    """Every hostile request but the concurrent decodes, in the order they are sent."""
    return [
        ("parquet bomb (64 MiB zstd cell)", parquet_bomb(), {"Content-Type": "application/vnd.apache.parquet"},
         REFUSED_MB),
        ("csv body", b"image\nQUJD\n", {"Content-Type": "text/csv"}, REFUSED_MB),
        ("padded inputs (4,097 strings)", padded_inputs(), JSON, REFUSED_MB),
        ("records with 5,000 distinct keys", many_keys(), JSON, REFUSED_MB),
        ("one-row body of 29 MB", one_row(29_000_000), JSON, REFUSED_MB),
        ("over-cap body of 91 MB", one_row(91_000_000), JSON, REFUSED_MB),
        ("over-cap body, chunked, 24 MB", one_row(24_000_000), {**JSON, "Transfer-Encoding": "chunked"}, REFUSED_MB),
        ("no Content-Type", covers(png16(64)), {}, REFUSED_MB),
        ("wrong column, 2 MB payload", wrong_column(2_000_000), JSON, REFUSED_MB),
        ("JSON nested 100,000 deep", deep_json(), JSON, REFUSED_MB),
        ("float32 TIFF 4350^2 (over budget)", covers(float_tiff(4350)), JSON, REFUSED_MB),
        ("float32 TIFF 4000^2 (in budget)", covers(float_tiff(4000)), JSON, DECODE_MB),
        ("16-bit PNG 5150^2", covers(png16(5150)), JSON, DECODE_MB),
        ("EPS cover", covers(other_format("EPS")), JSON, REFUSED_MB),
        ("ICO cover", covers(other_format("ICO")), JSON, REFUSED_MB),
        ("PSD cover", covers(other_format("PSD")), JSON, REFUSED_MB),
        ("PNG with a 64 MiB zTXt chunk", covers(png_text_bomb()), JSON, REFUSED_MB),
    ]
