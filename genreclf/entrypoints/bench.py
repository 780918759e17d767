"""Entry point ``bench``: each stage of the project measured against its reference or bound.

    mlflow run . -e bench -P data=synthetic --env-manager local

Every stage is a function ``(ctx) -> (metrics, table rows)`` (``genreclf.bench``); they run in one
MLflow run named ``bench-<device>``, which holds the metrics (``bench_<stage>_<name>``), the
environment (device, CPU, threads, versions) as params, and the comparison table
(``bench/bench_table.csv`` + ``.md``), which is also printed.
"""
from __future__ import annotations

import logging
import time

from genreclf.bench.runner import environment, features_stage, knobs, table, to_markdown
from genreclf.bench.stages import STAGES
from genreclf.config import ConfigError, Resolved, as_flat_dict
from genreclf.entrypoints.skeleton import entry_run, open_covers
from genreclf.models.cnn.device import pick_device
from genreclf.progress import progress_bar
from genreclf.tracking import runs

log = logging.getLogger(__name__)


def bench_sizes(resolved: Resolved) -> list[int]:
    cfg = resolved.bench
    sizes = sorted(int(s) for s in cfg.sizes.split(",") if s.strip())
    if len(sizes) < 2 or sizes[0] < 1:
        raise ConfigError(f"bench: sizes={cfg.sizes!r} needs >= 2 positive sizes")
    return [max(8, s // 20) for s in sizes] if cfg.quick else sizes


def chosen_stages(resolved: Resolved) -> dict:
    """The stages to run, in order: all of them, or the comma-separated subset ``stages`` names."""
    cfg, stages = resolved.bench, {"features": features_stage, **STAGES}
    if cfg.stages.strip() in ("", "all"):
        return stages
    chosen = [s.strip() for s in cfg.stages.split(",") if s.strip()]
    unknown = sorted(set(chosen) - set(stages))
    if unknown:
        raise ConfigError(f"bench: stages={cfg.stages!r}: unknown {unknown}; choose from {', '.join(stages)}")
    return {name: stages[name] for name in chosen}


def main(resolved: Resolved) -> dict:
    data, cfg = resolved.data, resolved.bench
    sizes, stages = bench_sizes(resolved), chosen_stages(resolved)
    device = pick_device("auto")
    covers = open_covers(resolved)
    env = environment(device)
    results, rows = {}, []
    params = {**as_flat_dict(data, cfg), **{f"env_{k}": v for k, v in env.items()}}
    with entry_run(resolved, covers, f"bench-{device.type}" + ("-quick" if cfg.quick else ""), "bench",
                   params=params, entry_point="bench") as run_id:
        runs.set_tags({"device": env["device"], "cpu_count": env["cpu_count"]})
        ctx = {"resolved": resolved, "cfg": knobs(cfg, cfg.quick), "covers": covers, "sizes": sizes,
               "repeats": min(cfg.repeats, 2) if cfg.quick else cfg.repeats, "run_id": run_id}
        for name, stage in progress_bar(stages.items(), desc="bench stages", unit="stage"):
            log.info("bench stage %s", name)
            start = time.perf_counter()
            metrics, stage_rows = stage(ctx)
            metrics["stage_s"] = time.perf_counter() - start
            results[name] = metrics
            rows += stage_rows
            runs.log_metrics({f"bench_{name}_{k}": float(v) for k, v in metrics.items()
                              if isinstance(v, (int, float))})
        df = table(rows)
        runs.log_table(df, "bench/bench_table.csv")
        markdown = to_markdown(df)
        runs.log_text(markdown + "\n", "bench/bench_table.md")
        runs.log_json({"environment": env, "results": results}, "bench/summary.json")
    print(f"\nbench on {env['device']} ({env['cpu_model']}, {env['cpu_count']} CPUs, torch threads "
          f"{env['torch_threads']}), medians of {ctx['repeats']}:\n" + markdown)
    return {"run_id": run_id, **results}
