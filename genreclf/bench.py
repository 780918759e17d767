"""Entry point ``bench``: each stage of the project measured against its reference or bound.

Every section is a function ``(resolved) -> dict`` of flat metrics; ``main`` runs them in one MLflow
run, logs the metrics (prefixed ``bench_<section>_``) and raw timings, and prints a table. Times are
medians of ``repeats`` runs, and the contenders of a section alternate within each repeat, so a
burst of load from elsewhere on the machine hits both sides alike.

Sections:
  features - feature-extraction throughput (images/s, decode included) of genreclf's extractor
             against the straightforward reference (:mod:`genreclf.reference`) on 640x640 JPEGs
"""
from __future__ import annotations

import logging
import statistics
import time

import numpy as np
from PIL import Image

from . import features, synthetic, tracking
from .config import DEFAULT_GENRES, as_flat_dict
from .images import encode

log = logging.getLogger(__name__)


def timed(fn) -> tuple[float, float]:
    """Wall-clock and CPU seconds (this process and its threads, not worker processes) of fn()."""
    wall, cpu = time.perf_counter(), time.process_time()
    fn()
    return time.perf_counter() - wall, time.process_time() - cpu


def medians(contenders: dict[str, callable], repeats: int) -> dict[str, dict]:
    """Median wall time (and all times) of each contender, alternating contenders within each repeat."""
    times: dict[str, list[tuple[float, float]]] = {name: [] for name in contenders}
    for _ in range(max(1, repeats)):
        for name, fn in contenders.items():
            times[name].append(timed(fn))
    return {name: {"median_s": statistics.median(w for w, _ in ts), "median_cpu_s": statistics.median(c for _, c in ts),
                   "times_s": [w for w, _ in ts]} for name, ts in times.items()}


def one_thread(fn, *args, **kwargs):
    """Run fn with OpenCV on one thread (then restore it): a true single-core measurement."""
    import cv2
    before = cv2.getNumThreads()
    cv2.setNumThreads(1)
    try:
        return fn(*args, **kwargs)
    finally:
        cv2.setNumThreads(before)


def genres_of(resolved) -> list[str]:
    names = [g.strip() for g in resolved.sections["data"].genres.split(",") if g.strip() and g.strip() != "all"]
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
    """Throughput of features.extract_many (all cores) and of one core, against the reference."""
    from .reference import extract_reference
    workers = workers or features.default_workers()
    reference = lambda: [extract_reference(c) for c in covers]  # noqa: E731 - one image at a time
    fast = lambda: features.extract_many(covers, progress=False, workers=workers, chunk=8)  # noqa: E731
    serial = lambda: one_thread(features.extract_many, covers, progress=False, workers=1)  # noqa: E731
    # warm-up, not timed: worker processes start once per session and load their face cascade
    extract_reference(covers[0])
    fast()
    res = medians({"reference": reference, "genreclf": fast, "genreclf_1core": serial}, repeats)
    n = len(covers)
    ips = {name: n / r["median_s"] for name, r in res.items()}
    # CPU time per image hardly depends on what else the machine runs: the load-independent view
    cpu_ms = {name: 1000 * res[name]["median_cpu_s"] / n for name in ("reference", "genreclf_1core")}
    return {
        "metrics": {"covers": n, "workers": workers, "reference_ips": ips["reference"],
                    "ips": ips["genreclf"], "ips_1core": ips["genreclf_1core"],
                    "speedup": ips["genreclf"] / ips["reference"],
                    "speedup_1core": ips["genreclf_1core"] / ips["reference"],
                    "reference_cpu_ms": cpu_ms["reference"], "cpu_ms_1core": cpu_ms["genreclf_1core"],
                    "cpu_speedup": cpu_ms["reference"] / cpu_ms["genreclf_1core"]},
        "raw": res,
    }


def features_section(resolved) -> dict:
    cfg = resolved.sections["bench"]
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
    tracking.log_json(out["raw"], "bench/features_times.json")
    return m


SECTIONS = {"features": features_section}


def main(resolved) -> dict:
    data, cfg = resolved.sections["data"], resolved.sections["bench"]
    tracking.configure(data.experiment)
    results: dict[str, dict] = {}
    with tracking.start_run("bench" + ("-quick" if cfg.quick else ""), "bench", "bench") as run_id:
        tracking.log_config(resolved)
        tracking.log_new_params(as_flat_dict(data, cfg))
        for name, section in SECTIONS.items():
            log.info("bench section %s", name)
            results[name] = section(resolved)
            tracking.log_metrics({f"bench_{name}_{k}": v for k, v in results[name].items()})
        tracking.log_json(results, "bench/summary.json")
    return {"run_id": run_id, **results}
