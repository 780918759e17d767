"""The bench's measuring tools, its feature-extraction stage and its result table.

The ``bench`` entry point (``genreclf.entrypoints.bench``) runs every stage in one MLflow run. Times
are medians of ``repeats`` runs; the contenders of a comparison run back to back in each repeat, in
alternating order, and the table's ratio is the median of the per-repeat (paired) ratios, with their
spread and a ``noisy`` flag (:mod:`genreclf.bench.ab`).

Stages (the others live in :mod:`genreclf.bench.stages`):
  features - feature-extraction throughput (images/s, decode included) of genreclf's extractor
             against the straightforward reference (:mod:`genreclf.bench.reference`) on 640x640 JPEGs
"""
from __future__ import annotations

import dataclasses
import logging
import os
import platform
from types import SimpleNamespace
from typing import Callable

import cv2
import mlflow
import numpy as np
import optuna
import pandas as pd
import torch
from PIL import Image

from genreclf.bench import ab
from genreclf.bench.reference import extract_reference
from genreclf.config import DEFAULT_GENRES, BenchConfig, Resolved
from genreclf.data import synthetic
from genreclf.data.images import encode
from genreclf.features import cover25
from genreclf.tracking import runs

log = logging.getLogger(__name__)


def medians(contenders: dict[str, Callable[[], object]], repeats: int) -> dict[str, dict]:
    """Median wall time (and all times) of each contender, interleaved A/B repeats (``ab.interleaved``)."""
    return {name: ab.summary(ts) for name, ts in ab.interleaved(contenders, repeats).items()}


def paired(res: dict, numerator: str, denominator: str) -> dict:
    """Median and spread of the per-repeat wall-time ratios numerator/denominator of a ``medians`` result."""
    return ab.paired(res[numerator]["times_s"], res[denominator]["times_s"])


def one_thread(fn, *args, **kwargs):
    """Run fn with OpenCV on one thread (then restore it): a true single-core measurement."""
    before = cv2.getNumThreads()
    cv2.setNumThreads(1)
    try:
        return fn(*args, **kwargs)
    finally:
        cv2.setNumThreads(before)


def genres_of(resolved: Resolved) -> list[str]:
    names = [g.strip() for g in resolved.data.genres.split(",") if g.strip() and g.strip() != "all"]
    return names or DEFAULT_GENRES.split(",")


# --- section: features -------------------------------------------------------------------------

def jpeg_covers(genres: list[str], n: int, size: int = 640, seed: int = 7) -> list[bytes]:
    """n synthetic covers across the genres, upscaled to size x size and JPEG-encoded (quality 90)."""
    out = []
    for i in range(n):
        cover = synthetic.make_cover(genres[i % len(genres)], 10_000 + i, seed)
        big = Image.fromarray(cover).resize((size, size), Image.BICUBIC)
        out.append(encode(np.asarray(big), "JPEG", 90))
    return out


def bench_features(covers: list[bytes], repeats: int, workers: int | None = None) -> dict:
    """Throughput of cover25.extract_many (all cores) and of one core, against the reference."""
    workers = workers or cover25.default_workers()
    reference = lambda: [extract_reference(c) for c in covers]  # noqa: E731 - one image at a time
    fast = lambda: cover25.extract_many(covers, progress=False, workers=workers, chunk=8)  # noqa: E731
    serial = lambda: one_thread(cover25.extract_many, covers, progress=False, workers=1)  # noqa: E731
    # warm-up, not timed: worker processes start once per session and load their face cascade
    extract_reference(covers[0])
    fast()
    res = medians({"reference": reference, "genreclf": fast, "genreclf_1core": serial}, repeats)
    n = len(covers)
    ips = {name: n / r["median_s"] for name, r in res.items()}
    pairs = {"speedup": paired(res, "reference", "genreclf"),
             "speedup_1core": paired(res, "reference", "genreclf_1core")}
    # CPU time per image hardly depends on what else the machine runs: the load-independent view
    cpu_ms = {name: 1000 * res[name]["median_cpu_s"] / n for name in ("reference", "genreclf_1core")}
    return {
        "metrics": {"covers": n, "workers": workers, "reference_ips": ips["reference"],
                    "ips": ips["genreclf"], "ips_1core": ips["genreclf_1core"],
                    "speedup": pairs["speedup"]["ratio"], "speedup_1core": pairs["speedup_1core"]["ratio"],
                    "speedup_rel_iqr": pairs["speedup"]["rel_iqr"],
                    "speedup_1core_rel_iqr": pairs["speedup_1core"]["rel_iqr"],
                    "reference_cpu_ms": cpu_ms["reference"], "cpu_ms_1core": cpu_ms["genreclf_1core"],
                    "cpu_speedup": cpu_ms["reference"] / cpu_ms["genreclf_1core"]},
        "raw": res, "pairs": pairs,
    }


def features_section(resolved: Resolved) -> dict:
    cfg = resolved.bench
    n, repeats = (16, min(cfg.repeats, 2)) if cfg.quick else (64, cfg.repeats)
    covers = jpeg_covers(genres_of(resolved), n)
    out = bench_features(covers, repeats)
    m = out["metrics"]
    print(f"\nfeature extraction, {n} covers 640x640 JPEG, decode included, median of {repeats}:\n"
          f"  reference (1 image at a time, full size)  {m['reference_ips']:8.1f} images/s\n"
          f"  genreclf, 1 core                          {m['ips_1core']:8.1f} images/s  ({m['speedup_1core']:.1f}x)\n"
          f"  genreclf, {m['workers']} worker processes              {m['ips']:8.1f} images/s  ({m['speedup']:.1f}x)\n"
          f"  CPU time per image: reference {m['reference_cpu_ms']:.1f} ms, genreclf {m['cpu_ms_1core']:.1f} ms "
          f"({m['cpu_speedup']:.1f}x less)")
    runs.log_json({**out["raw"], "pairs": out["pairs"]}, "bench/features_times.json")
    return {**m, "pairs": out["pairs"]}


def features_stage(ctx) -> tuple[dict, list]:
    m = features_section(ctx["resolved"])
    pairs = m.pop("pairs")
    rows = [("feature extraction", f"images/s, {m['covers']} JPEG 640px, decode included, {m['workers']} workers",
             m["ips"], "reference (genreclf/reference.py)", m["reference_ips"], m["speedup"], ">= 20",
             *ab_cells(pairs["speedup"])),
            ("feature extraction", "images/s, 1 core", m["ips_1core"], "reference", m["reference_ips"],
             m["speedup_1core"], "", *ab_cells(pairs["speedup_1core"])),
            ("feature extraction", "CPU ms per image, 1 core", m["cpu_ms_1core"], "reference CPU ms",
             m["reference_cpu_ms"], m["cpu_speedup"], "")]
    return m, rows


# --- the run -------------------------------------------------------------------------------------

COLUMNS = ["stage", "measure", "genreclf", "comparison", "comparison_value", "ratio", "target", "ratio_spread", "noisy"]


def ab_cells(p: dict) -> tuple[str, str]:
    """The table's spread and noisy cells of a paired comparison (rows without one leave them empty)."""
    return ab.spread_cell(p), "NOISY" if p["noisy"] else "ok"


def knobs(cfg: BenchConfig, quick: bool) -> SimpleNamespace:
    """The BenchConfig plus the sizes of the smaller measurements (all smaller with ``quick``)."""
    k = SimpleNamespace(**dataclasses.asdict(cfg))
    k.probe_epochs, k.train_steps, k.latency_calls = (2, 2, 5) if quick else (3, 6, 30)
    k.rest_clients, k.rest_time_cap, k.rest_start_timeout = 4, (30 if quick else 60), 120
    k.tune_trials = 2 if quick else 4
    k.rest_requests = min(cfg.rest_requests, 12) if quick else cfg.rest_requests
    return k


def environment(device: torch.device) -> dict:
    cpu = next((line.split(":", 1)[1].strip() for line in open("/proc/cpuinfo") if line.startswith("model name")), "") \
        if os.path.exists("/proc/cpuinfo") else platform.processor()
    env = {"device": str(device), "cpu_count": os.cpu_count(), "cpu_model": cpu,
           "torch_threads": torch.get_num_threads(),
           "python": platform.python_version(), "torch": torch.__version__, "mlflow": mlflow.__version__,
           "optuna": optuna.__version__, "numpy": np.__version__, "platform": platform.platform()}
    if device.type == "cuda":
        env["gpu"] = torch.cuda.get_device_name(device)
    return env


def table(rows: list) -> pd.DataFrame:
    df = pd.DataFrame([tuple(r) + ("",) * (len(COLUMNS) - len(r)) for r in rows], columns=COLUMNS)
    for c in ("genreclf", "comparison_value", "ratio"):
        df[c] = df[c].astype(float).round(3)
    return df


def to_markdown(df: pd.DataFrame) -> str:
    cells = [[f"{v:.3g}" if isinstance(v, float) else str(v) for v in row] for row in df.itertuples(index=False)]
    lines = ["| " + " | ".join(df.columns) + " |", "|" + "---|" * len(df.columns)]
    return "\n".join(lines + ["| " + " | ".join(r) + " |" for r in cells])
