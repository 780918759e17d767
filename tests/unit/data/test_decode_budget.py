"""The decode budget counts what decoding really holds: measured peak RSS <= 1.25 x decode_cost for each mode.

Each decode runs in a fresh interpreter (large allocations mmapped, so freed memory is not reused unseen);
the peak is the kernel's high-water mark (VmHWM), reset right before the decode.
"""
from __future__ import annotations

import io
import os
import subprocess
import sys

import numpy as np
import pytest
from PIL import Image

from genreclf.data.images import decode_cost

SIDE = 3000
PROBE = """
import re, sys
from genreclf.data import images
data, size = open(sys.argv[1], "rb").read(), int(sys.argv[2]) or None
images.MAX_DECODE_BYTES = 2**40  # measure, never refuse
def status(key):
    return int(re.search(key + r":\\s+(\\d+)", open("/proc/self/status").read()).group(1)) * 1024
open("/proc/self/clear_refs", "w").write("5")
base = status("VmRSS")
images.decode_rgb(data, size)
print(status("VmHWM") - base)
"""


def _cover(mode: str) -> bytes:
    ramp = (np.arange(SIDE)[:, None] * 7 + np.arange(SIDE)[None, :]).astype(np.uint32)
    gray = (ramp % 251).astype(np.uint8)
    img = {"1": lambda: Image.fromarray(ramp % 3 == 0).convert("1"),
           "L": lambda: Image.fromarray(gray, "L"),
           "P": lambda: Image.fromarray(gray, "L").convert("P"),
           "RGB": lambda: Image.fromarray(np.stack([gray] * 3, -1), "RGB"),
           "RGBA": lambda: Image.fromarray(np.stack([gray] * 4, -1), "RGBA"),
           "I;16": lambda: Image.fromarray((ramp % 60000).astype(np.uint16), "I;16"),
           "I": lambda: Image.fromarray((ramp % 70000).astype(np.int32), "I"),
           "F": lambda: Image.fromarray((ramp % 1000).astype(np.float32), "F")}[mode]()
    buf = io.BytesIO()
    if mode in ("I", "F"):  # one strip: libtiff's worst case, its buffer the whole raster
        img.save(buf, "TIFF", compression="tiff_adobe_deflate", tiffinfo={278: SIDE})
    else:
        img.save(buf, "PNG")
    return buf.getvalue()


@pytest.mark.skipif(not os.path.exists("/proc/self/clear_refs"), reason="needs Linux /proc peak-RSS reset")
@pytest.mark.parametrize("size", [None, 224])
@pytest.mark.parametrize("mode", ["1", "L", "P", "RGB", "RGBA", "I;16", "I", "F"])
def test_measured_peak_is_within_the_counted_bytes(mode, size, tmp_path):
    data = _cover(mode)
    img = Image.open(io.BytesIO(data))
    assert img.mode == mode
    counted = decode_cost(img, size)
    path = tmp_path / "cover"
    path.write_bytes(data)
    env = {**os.environ, "MALLOC_MMAP_THRESHOLD_": "131072"}
    out = subprocess.run([sys.executable, "-c", PROBE, str(path), str(size or 0)], env=env,
                         capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr[-2000:]
    peak = int(out.stdout.split()[-1])
    print(f"{mode} size={size}: counted {counted / 2**20:.1f} MiB, peak {peak / 2**20:.1f} MiB")
    assert peak <= 1.25 * counted, (peak, counted)
