"""The ``bench`` entry point, quick mode on tiny data: every figure is logged, finite and positive."""
from __future__ import annotations

import math
import subprocess

import pandas as pd

from genreclf.tracking import runs as tracking

FIGURES = {  # stage -> metrics that must exist (each compared with its reference or bound)
    "features": ["ips", "reference_ips", "speedup", "ips_1core", "speedup_1core", "cpu_speedup"],
    "scaling": ["features_ips_25", "features_ips_50", "features_linearity"],
    "pipeline": ["cache_covers_per_s_25", "source_covers_per_s_25", "speedup_25", "cache_covers_per_s_50",
                 "source_covers_per_s_50", "speedup_50", "cache_linearity", "source_linearity", "speedup"],
    "training": ["train_images_per_s", "bare_images_per_s", "pipeline_efficiency", "probe_embeddings_cold_s",
                 "probe_backbone_every_epoch_s", "probe_speedup"],
    "inference": ["single_p50_ms", "single_p95_ms", "batch32_images_per_s", "bare_images_per_s", "overhead",
                  "rest_requests_per_s", "rest_p95_ms", "rest_ok"],
    "tuning": ["trial_work_s_median", "trial_bookkeeping_s_median", "overhead_s_per_trial"],
    "datalayer": ["seconds_40", "seconds_1000", "peak_mb_40", "peak_mb_1000", "held_before_mb_1000", "time_linearity",
                  "peak_ratio", "dedup_checked_1000", "dedup_dropped_1000", "dedup_identical"],
}


def test_bench_quick_logs_every_figure(workdir, genreclf_cmd):
    out = subprocess.run(genreclf_cmd + ["bench", "--data", "synthetic:6", "--cache_size", "64", "--image_size", "64",
                                         "--batch_size", "8", "--sizes", "500,1000", "--quick", "true"],
                         capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-3000:]
    assert "| stage | measure |" in out.stdout  # the table is printed

    run = tracking.search_runs("album-genre", "tags.entry_point = 'bench'")[0]
    assert run.info.run_name == "bench-cpu-quick"
    assert run.data.params["env_device"] == "cpu" and int(run.data.params["env_cpu_count"]) >= 1
    assert int(run.data.params["env_torch_threads"]) >= 1 and run.data.params["env_torch"]
    metrics = run.data.metrics
    for stage, names in FIGURES.items():
        for name in names:
            value = metrics.get(f"bench_{stage}_{name}")
            assert value is not None, f"bench_{stage}_{name} not logged"
            if name != "overhead":  # the pyfunc may even be faster than the bare forward: any finite number
                assert math.isfinite(value) and value > 0, f"bench_{stage}_{name} = {value}"
    assert metrics["bench_inference_rest_ok"] == metrics["bench_inference_rest_sent"] == 12
    assert metrics["bench_inference_single_p95_ms"] >= metrics["bench_inference_single_p50_ms"]
    assert metrics["bench_datalayer_dedup_identical"] == 1  # multi-index == the O(N²) scan on the bench's covers

    table = pd.read_csv(tracking.download(f"runs:/{run.info.run_id}/bench/bench_table.csv"))
    assert {"feature extraction", "data pipeline", "CNN training", "inference", "tuning", "scaling"} <= set(table.stage)
    assert (table.ratio.astype(float) > 0).all() and table.ratio.astype(float).map(math.isfinite).all()
    paired = table[table.noisy.isin(["ok", "NOISY"])]  # every A/B comparison carries its spread and flag
    assert len(paired) >= 6 and paired.ratio_spread.str.contains("IQR").all()
    md = tracking.download(f"runs:/{run.info.run_id}/bench/bench_table.md")
    assert open(md).read().startswith("| stage |")
