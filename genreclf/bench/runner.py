"""Entry point ``bench``: each stage of the project measured against its reference or bound.

    mlflow run . -e bench -P data=synthetic --env-manager local

Every stage is a function ``(ctx) -> (metrics, table rows)``; ``main`` runs them in one MLflow run
named ``bench-<device>``, logs the metrics (``bench_<stage>_<name>``), the environment (device, CPU,
threads, versions) as params, the comparison table (``bench/bench_table.csv`` + ``.md``) and prints it. Times are
medians of ``repeats`` runs, and the contenders of a section alternate within each repeat, so a
burst of load from elsewhere on the machine hits both sides alike.

Stages (the others live in :mod:`genreclf.bench.stages`):
  features - feature-extraction throughput (images/s, decode included) of genreclf's extractor
             against the straightforward reference (:mod:`genreclf.bench.reference`) on 640x640 JPEGs
"""
from __future__ import annotations

import dataclasses
import logging
import os
import statistics
import time
from types import SimpleNamespace

import numpy as np
from PIL import Image

from genreclf.config import DEFAULT_GENRES, ConfigError, as_flat_dict
from genreclf.data import synthetic
from genreclf.data.images import encode
from genreclf.progress import progress_bar
from genreclf.rf import features
from genreclf.tracking import runs as tracking

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
    from genreclf.bench.reference import extract_reference
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


def features_stage(ctx) -> tuple[dict, list]:
    m = features_section(ctx["resolved"])
    rows = [("feature extraction", f"images/s, {m['covers']} JPEG 640px, decode included, {m['workers']} workers",
             m["ips"], "reference (genreclf/reference.py)", m["reference_ips"], m["speedup"], ">= 20"),
            ("feature extraction", "images/s, 1 core", m["ips_1core"], "reference", m["reference_ips"],
             m["speedup_1core"], ""),
            ("feature extraction", "CPU ms per image, 1 core", m["cpu_ms_1core"], "reference CPU ms",
             m["reference_cpu_ms"], m["cpu_speedup"], "")]
    return m, rows


# --- the run -------------------------------------------------------------------------------------

COLUMNS = ["stage", "measure", "genreclf", "comparison", "comparison_value", "ratio", "target"]


def knobs(cfg, quick: bool) -> SimpleNamespace:
    """The BenchConfig plus the sizes of the smaller measurements (all smaller with ``quick``)."""
    k = SimpleNamespace(**dataclasses.asdict(cfg))
    k.probe_epochs, k.train_steps, k.latency_calls = (2, 2, 5) if quick else (3, 6, 30)
    k.rest_clients, k.rest_time_cap, k.rest_start_timeout = 4, (30 if quick else 60), 120
    k.tune_trials = 2 if quick else 4
    k.rest_requests = min(cfg.rest_requests, 12) if quick else cfg.rest_requests
    return k


def environment(device) -> dict:
    import platform

    import mlflow
    import optuna
    import torch
    cpu = next((line.split(":", 1)[1].strip() for line in open("/proc/cpuinfo") if line.startswith("model name")), "") \
        if os.path.exists("/proc/cpuinfo") else platform.processor()
    env = {"device": str(device), "cpu_count": os.cpu_count(), "cpu_model": cpu, "torch_threads": torch.get_num_threads(),
           "python": platform.python_version(), "torch": torch.__version__, "mlflow": mlflow.__version__,
           "optuna": optuna.__version__, "numpy": np.__version__, "platform": platform.platform()}
    if device.type == "cuda":
        env["gpu"] = torch.cuda.get_device_name(device)
    return env


def table(rows: list) -> "pd.DataFrame":
    import pandas as pd
    df = pd.DataFrame(rows, columns=COLUMNS)
    for c in ("genreclf", "comparison_value", "ratio"):
        df[c] = df[c].astype(float).round(3)
    return df


def to_markdown(df) -> str:
    cells = [[f"{v:.3g}" if isinstance(v, float) else str(v) for v in row] for row in df.itertuples(index=False)]
    lines = ["| " + " | ".join(df.columns) + " |", "|" + "---|" * len(df.columns)]
    return "\n".join(lines + ["| " + " | ".join(r) + " |" for r in cells])


def main(resolved) -> dict:
    from genreclf.bench.stages import STAGES
    from genreclf.cnn.fit import pick_device
    from genreclf.data.covers import load_covers
    data, cfg = resolved.sections["data"], resolved.sections["bench"]
    sizes = sorted(int(s) for s in cfg.sizes.split(",") if s.strip())
    if len(sizes) < 2 or sizes[0] < 1 or cfg.repeats < 1:
        raise ConfigError(f"bench: sizes={cfg.sizes!r} needs >= 2 positive sizes, repeats={cfg.repeats} >= 1")
    sizes = [max(8, s // 20) for s in sizes] if cfg.quick else sizes
    device = pick_device("auto")
    tracking.configure(data.experiment)
    results, rows = {}, []
    stages = {"features": features_stage, **STAGES}
    with tracking.start_run(f"bench-{device.type}" + ("-quick" if cfg.quick else ""), "bench", "bench") as run_id:
        env = environment(device)
        tracking.log_config(resolved)
        tracking.log_new_params({**as_flat_dict(data, cfg), **{f"env_{k}": v for k, v in env.items()}})
        tracking.set_tags({"device": env["device"], "cpu_count": env["cpu_count"]})
        covers = load_covers(data)
        tracking.log_coverset(covers)
        ctx = {"resolved": resolved, "cfg": knobs(cfg, cfg.quick), "covers": covers, "sizes": sizes,
               "repeats": min(cfg.repeats, 2) if cfg.quick else cfg.repeats, "run_id": run_id}
        for name, stage in progress_bar(stages.items(), desc="bench stages", unit="stage"):
            log.info("bench stage %s", name)
            start = time.perf_counter()
            metrics, stage_rows = stage(ctx)
            metrics["stage_s"] = time.perf_counter() - start
            results[name] = metrics
            rows += stage_rows
            tracking.log_metrics({f"bench_{name}_{k}": float(v) for k, v in metrics.items()
                                  if isinstance(v, (int, float))})
        df = table(rows)
        tracking.log_table(df, "bench/bench_table.csv")
        markdown = to_markdown(df)
        tracking.log_text(markdown + "\n", "bench/bench_table.md")
        tracking.log_json({"environment": env, "results": results}, "bench/summary.json")
    print(f"\nbench on {env['device']} ({env['cpu_model']}, {env['cpu_count']} CPUs, torch threads "
          f"{env['torch_threads']}), medians of {ctx['repeats']}:\n" + markdown)
    return {"run_id": run_id, **results}
