"""The measurements of ``bench`` beyond feature extraction: each stage against its bound or the naive way.

Each stage is ``(ctx) -> (metrics, rows)``: flat metrics (logged as ``bench_<stage>_<name>``) and
table rows ``(stage, measure, genreclf, comparison, comparison value, ratio, target)``. ``ctx`` holds
the resolved config, the covers (the decoded cache) and what earlier stages produced (the model).

  pipeline  - covers/s the training loader delivers from the decoded cache vs reading + decoding the
              source files every epoch, at each of ``sizes`` covers (the scaling curve)
  scaling   - feature-extraction images/s at each of ``sizes`` covers (linear: constant images/s)
  training  - img/s of the real train loop vs bare forward+backward on random tensors (cnn_bench);
              frozen backbone: cached embeddings vs running the backbone every epoch
  inference - the logged pyfunc: single-cover latency p50/p95, batch-32 throughput vs the bare forward;
              the REST server (``mlflow models serve``) under a bounded load from a second process
              (:mod:`genreclf.bench.load`)
  tuning    - seconds of MLflow + Optuna bookkeeping per trial vs the trial's own work (a small RF study)
  datalayer - load_covers time and peak memory at ``data_sizes`` covers; de-dup vs the O(N²) scan
              (:mod:`genreclf.bench.datalayer`)
"""
from __future__ import annotations

import functools
import os
import statistics
import tempfile
import time
import uuid
from pathlib import Path

import numpy as np
import optuna
import pandas as pd
import torch

from genreclf.bench import ab
from genreclf.bench import cnn as cnn_bench
from genreclf.bench.datalayer import datalayer_stage
from genreclf.bench.load import rest_load
from genreclf.bench.runner import ab_cells, genres_of, jpeg_covers, medians, paired
from genreclf.config import CNNConfig, Resolved, RFConfig, TuneConfig
from genreclf.data.images import decode_rgb, encode
from genreclf.features import cover25
from genreclf.models.cnn import FAMILY as CNN_FAMILY
from genreclf.models.cnn import predictor
from genreclf.models.cnn.datasets import CoverDataset, image_loader
from genreclf.models.cnn.device import pick_device
from genreclf.nets import backbones
from genreclf.nets.transforms import create_transform, flip_views, mean_softmax, normalize, to_chw
from genreclf.progress import progress_bar
from genreclf.serving.cover_model import log_cover_model
from genreclf.tracking import registry, runs
from genreclf.tuning.objectives import make_objective
from genreclf.tuning.search import Search
from genreclf.tuning.space import DEFAULT_DIR
from genreclf.tuning.storage import open_storage, storage_url
from genreclf.tuning.study import bookkeeping_overhead
from genreclf.tuning.worker import work


def bench_cnn_config(ctx) -> CNNConfig:
    """The CNN the bench trains and serves: small enough for a 2-core CPU in minutes, a real resnet."""
    b = ctx["cfg"]
    return CNNConfig(backbone=b.backbone, pretrained=False, image_size=b.image_size, batch_size=b.batch_size,
                     epochs=b.probe_epochs, register=False, patience=0, warmup_epochs=0)


def linearity(sizes: list[int], seconds: list[float]) -> float:
    """(time ratio) / (size ratio) between the largest and smallest size: 1.0 = linear, > 1 = worse."""
    return (seconds[-1] / seconds[0]) / (sizes[-1] / sizes[0])


# --- data pipeline -------------------------------------------------------------------------------

class SourceFiles(torch.utils.data.Dataset):
    """The naive loader: read and decode each cover file every time it is served (no cache)."""

    def __init__(self, paths: list[str], labels: np.ndarray, size: int, transform):
        self.paths, self.labels, self.size, self.transform = paths, labels, size, transform

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, i):
        rgb = decode_rgb(Path(self.paths[i]).read_bytes(), self.size, name=self.paths[i])
        return self.transform(to_chw(rgb)), int(self.labels[i])


def one_epoch(loader) -> int:
    return sum(len(y) for _, y in loader)


def train_epoch_of(dataset: torch.utils.data.Dataset, cfg: CNNConfig, device: torch.device) -> int:
    """Covers served by one epoch of the training loader over ``dataset``."""
    return one_epoch(image_loader(dataset, cfg, device, True))


def pipeline_stage(ctx) -> tuple[dict, list]:
    covers, cfg, sizes = ctx["covers"], bench_cnn_config(ctx), ctx["sizes"]
    device = pick_device("auto")
    transform = create_transform(cfg.image_size, True)
    size = covers.images.shape[1]
    metrics: dict[str, float] = {}
    rows: list[tuple] = []
    per: dict[str, list[float]] = {"cache": [], "source": []}
    cpu: dict[str, list[float]] = {"cache": [], "source": []}
    with tempfile.TemporaryDirectory() as tmp:
        files = []  # the covers as JPEG files (quality 90), as a source folder would hold them
        for i in range(len(covers)):
            files.append(os.path.join(tmp, f"{i}.jpg"))
            Path(files[-1]).write_bytes(encode(np.asarray(covers.images[i]), "JPEG", 90))
        for n in progress_bar(sizes, desc="data pipeline sizes", leave=False):
            idx = np.resize(np.arange(len(covers)), n)  # n covers, repeating the cache if it holds fewer
            cached = CoverDataset(covers.images, covers.labels, idx, transform)
            source = SourceFiles([files[i] for i in idx], covers.labels[idx], size, transform)
            res = medians({"cache": functools.partial(train_epoch_of, cached, cfg, device),
                           "source": functools.partial(train_epoch_of, source, cfg, device)}, ctx["repeats"])
            for name in per:
                per[name].append(res[name]["median_s"])
                cpu[name].append(res[name]["median_cpu_s"])  # CPU time: hardly moved by other load
                metrics[f"{name}_covers_per_s_{n}"] = n / res[name]["median_s"]
                metrics[f"{name}_cpu_ms_per_cover_{n}"] = 1000 * res[name]["median_cpu_s"] / n
            pair = paired(res, "source", "cache")  # per-repeat cache speedup
            metrics[f"speedup_{n}"], metrics[f"speedup_rel_iqr_{n}"] = pair["ratio"], pair["rel_iqr"]
            rows.append(("data pipeline", f"covers/s, train loader, {n} covers", metrics[f"cache_covers_per_s_{n}"],
                         "decode source files each epoch", metrics[f"source_covers_per_s_{n}"],
                         metrics[f"speedup_{n}"], "", *ab_cells(pair)))
    for name in per:
        metrics[f"{name}_linearity"] = linearity(sizes, per[name])
        metrics[f"{name}_cpu_linearity"] = linearity(sizes, cpu[name])
        rows.append(("scaling", f"data pipeline ({name}): wall time ratio / size ratio, {sizes[0]}->{sizes[-1]}",
                     metrics[f"{name}_linearity"], "linear", 1.0, metrics[f"{name}_linearity"], "~1.0 (linear)"))
        rows.append(("scaling", f"data pipeline ({name}): CPU time ratio / size ratio, {sizes[0]}->{sizes[-1]}",
                     metrics[f"{name}_cpu_linearity"], "linear", 1.0, metrics[f"{name}_cpu_linearity"],
                     "~1.0 (linear)"))
    n = sizes[-1]
    metrics["cpu_speedup"] = metrics[f"source_cpu_ms_per_cover_{n}"] / metrics[f"cache_cpu_ms_per_cover_{n}"]
    rows.append(("data pipeline", f"CPU ms per cover, {n} covers", metrics[f"cache_cpu_ms_per_cover_{n}"],
                 "decode source files each epoch", metrics[f"source_cpu_ms_per_cover_{n}"], metrics["cpu_speedup"], ""))
    metrics["speedup"] = metrics[f"speedup_{sizes[-1]}"]
    return metrics, rows


# --- CNN training --------------------------------------------------------------------------------

def training_stage(ctx) -> tuple[dict, list]:
    covers, cfg, b = ctx["covers"], bench_cnn_config(ctx), ctx["cfg"]
    eff = cnn_bench.measure_training_efficiency(covers, cfg, steps=b.train_steps, repeats=ctx["repeats"])
    bare, train = statistics.median(eff["bare_all"]), statistics.median(eff["train_all"])
    pair = ab.paired(eff["train_all"], eff["bare_all"])  # bare and train back to back within each repeat
    probe = cnn_bench.measure_probe_paths(covers, cfg)
    m = {"train_images_per_s": train, "bare_images_per_s": bare, "pipeline_efficiency": pair["ratio"],
         "pipeline_efficiency_rel_iqr": pair["rel_iqr"],
         "probe_embeddings_cold_s": probe["embeddings_cold_s"],
         "probe_embeddings_cached_s": probe["embeddings_cached_s"],
         "probe_backbone_every_epoch_s": probe["backbone_every_epoch_s"], "probe_speedup": probe["speedup_cold"],
         "probe_epochs": probe["epochs"], "probe_train_covers": probe["train_covers"]}
    rows = [("CNN training", f"img/s, train_one_epoch ({cfg.backbone} {cfg.image_size}px, batch {cfg.batch_size})",
             train, "bare fwd+bwd on random tensors", bare, m["pipeline_efficiency"], ">= 0.85", *ab_cells(pair)),
            ("CNN training", f"frozen backbone, s for {probe['epochs']} epochs (embeddings once)",
             probe["embeddings_cold_s"], "backbone every epoch", probe["backbone_every_epoch_s"],
             m["probe_speedup"], "> 1")]
    return m, rows


# --- inference -----------------------------------------------------------------------------------

def log_bench_model(ctx) -> str:
    """A resnet (untrained weights: speed does not depend on them) logged as the project's CNN pyfunc.

    Logged to the bench run, not registered: a bench must not add versions to ``album-genre-cnn``."""
    covers, cfg = ctx["covers"], bench_cnn_config(ctx)
    torch.manual_seed(0)
    model = backbones.create_model(cfg.backbone, len(covers.genres), pretrained=False)
    uri, _ = log_cover_model(CNN_FAMILY, predictor.weights_writer(model), predictor.meta_for(cfg, covers), covers,
                             register=False, tags={"purpose": "bench"})
    return uri


def percentile(xs: list[float], q: float) -> float:
    return float(np.percentile(np.asarray(xs), q))


def inference_stage(ctx) -> tuple[dict, list]:
    covers, b = ctx["covers"], ctx["cfg"]
    uri = ctx.setdefault("model_uri", log_bench_model(ctx))
    pyfunc = registry.load_pyfunc(uri)
    impl = pyfunc.unwrap_python_model().predictor
    blobs = [encode(np.asarray(covers.images[i % len(covers)]), "JPEG", 90) for i in range(32)]
    one = pd.DataFrame({"image": blobs[:1]})
    batch = pd.DataFrame({"image": blobs})
    pyfunc.predict(batch)  # warm-up: first call allocates
    lat = []
    for _ in progress_bar(range(b.latency_calls), desc="single-cover latency", leave=False):
        t = time.perf_counter()
        pyfunc.predict(one)
        lat.append(time.perf_counter() - t)
    x = normalize(torch.stack([impl.transform(to_chw(decode_rgb(c, impl.size))) for c in blobs]).to(impl.device),
                  impl.device.type == "cuda")

    def bare():  # the same math predict_proba runs (flip TTA included), on ready tensors
        with torch.inference_mode():
            mean_softmax(impl.model, flip_views(x, impl.tta)).cpu()
    bare()
    res = medians({"pyfunc": lambda: pyfunc.predict(batch), "bare": bare}, max(ctx["repeats"], 3))
    py_ips, bare_ips = 32 / res["pyfunc"]["median_s"], 32 / res["bare"]["median_s"]
    pair = paired(res, "pyfunc", "bare")  # per-repeat time ratio = bare img/s over pyfunc img/s
    m = {"single_p50_ms": 1000 * percentile(lat, 50), "single_p95_ms": 1000 * percentile(lat, 95),
         "batch32_images_per_s": py_ips, "bare_images_per_s": bare_ips, "overhead": pair["ratio"] - 1,
         "overhead_rel_iqr": pair["rel_iqr"],
         "tta": int(impl.tta)}
    rows = [("inference", "pyfunc single cover p50 / p95 ms", m["single_p50_ms"], "p95 ms", m["single_p95_ms"],
             m["single_p95_ms"] / m["single_p50_ms"], ""),
            ("inference", "pyfunc batch 32, img/s (JPEG bytes in)", py_ips, "bare model forward", bare_ips,
             1 + m["overhead"], "<= 1.15", *ab_cells(pair))]
    rest = rest_load(uri, blobs, b)
    m.update({f"rest_{k}": v for k, v in rest.items()})
    rows.append(("inference", f"REST requests/s (1 cover each, {b.rest_clients} clients)", rest["requests_per_s"],
                 "p95 latency ms", rest["p95_ms"], rest["ok"] / rest["sent"], "all requests OK"))
    return m, rows


# --- tuning --------------------------------------------------------------------------------------

def tuning_stage(ctx) -> tuple[dict, list]:
    """A small RF study through the real trial machinery (child runs of the bench run), no refit."""
    b, resolved = ctx["cfg"], ctx["resolved"]
    sections = dict(resolved.sections)  # bench has no tune/rf sections: their defaults, a small study
    sections["tune"] = TuneConfig(n_trials=b.tune_trials, n_workers=1, cv_folds=2)
    sections["rf"] = RFConfig(register=False)
    resolved = Resolved("tune_rf", sections)
    name = f"bench-rf-{uuid.uuid4().hex[:8]}"
    url = storage_url("", name, runs.configure(sections["data"].experiment))
    objective, max_resource = make_objective("rf", resolved, ctx["covers"], progress=False)
    search = Search("rf", resolved, name, url, ctx["run_id"], b.tune_trials, None,
                    str(DEFAULT_DIR / "space_rf.yaml"), 1)
    start = time.perf_counter()
    work(search, objective, max_resource)
    wall = time.perf_counter() - start
    study = optuna.load_study(study_name=name, storage=open_storage(url))
    m = bookkeeping_overhead(study, wall_s=wall)
    m["trials"] = len(study.trials)
    rows = [("tuning", "bookkeeping s per trial (MLflow + Optuna, all of it)", m["overhead_s_per_trial"],
             "trial's own work s (median)", m["trial_work_s_median"],
             m["overhead_s_per_trial"] / m["trial_work_s_median"], "small vs work")]
    return m, rows


# --- scaling of feature extraction ---------------------------------------------------------------

def scaling_stage(ctx) -> tuple[dict, list]:
    """genreclf's extractor at each of ``sizes`` covers (64 distinct 640 px JPEGs, repeated)."""
    distinct = jpeg_covers(genres_of(ctx["resolved"]), 16 if ctx["cfg"].quick else 64)
    sizes, metrics, rows, wall = ctx["sizes"], {}, [], []
    for n in progress_bar(sizes, desc="feature extraction sizes", leave=False):
        blobs = [distinct[i % len(distinct)] for i in range(n)]
        res = medians({"genreclf": functools.partial(cover25.extract_many, blobs, progress=False, chunk=8)},
                      ctx["repeats"])
        wall.append(res["genreclf"]["median_s"])
        metrics[f"features_ips_{n}"] = n / wall[-1]
    metrics["features_linearity"] = linearity(sizes, wall)
    rows.append(("scaling", f"feature extraction images/s at {', '.join(map(str, sizes))} covers",
                 metrics[f"features_ips_{sizes[0]}"], f"images/s at {sizes[-1]}", metrics[f"features_ips_{sizes[-1]}"],
                 metrics["features_linearity"], "~1.0 (linear)"))
    return metrics, rows


STAGES = {"pipeline": pipeline_stage, "scaling": scaling_stage, "training": training_stage,
          "inference": inference_stage, "tuning": tuning_stage,
          "datalayer": datalayer_stage}
