"""Entry point ``score``: classify a folder or parquet of covers with a registered model, in chunks.

    genreclf score --model "models:/album-genre-cnn@champion" --input covers/ --output predictions/

Writes ``<output>/part-*.parquet`` (id, genre, p_<genre>...) and ``manifest.json``; a killed job
started again with the same arguments scores only what is missing (see ``serving/batch.py``) and
continues the same MLflow run. The run logs the model version, the genre counts, and the skipped
covers with their reasons. For a Spark cluster (``--engine spark``, or ``spark-submit genreclf/cli.py
score --engine spark ...``): ``genreclf/serving/spark_score.py``.
"""
from __future__ import annotations

import logging
from pathlib import Path

import pandas as pd
from tqdm.auto import tqdm

from genreclf.config import ConfigError, Resolved, ScoreConfig
from genreclf.entrypoints.skeleton import entry_run
from genreclf.serving import batch, spark_score
from genreclf.serving.payloads import load_model
from genreclf.tracking import registry, runs

log = logging.getLogger(__name__)


def resolve_version(model_uri: str) -> str:
    """The registry version a ``models:/name@alias`` URI points at now (recorded: the alias may move)."""
    if not model_uri.startswith("models:/"):
        return ""
    name, _, ref = model_uri[len("models:/"):].partition("@")
    if ref:
        aliases = registry.registered_aliases(name) or {}
        if ref not in aliases:
            raise ConfigError(f"model={model_uri}: {name} has no version with alias @{ref} "
                              f"(aliases: {sorted(aliases) or 'none'})")
        return aliases[ref]
    return name.rpartition("/")[2]


def main(resolved: Resolved) -> dict:
    cfg = resolved.score
    runs.configure(cfg.experiment)
    if cfg.engine == "spark":
        return score_on_spark(resolved, cfg)
    source = batch.open_source(cfg.input)
    out = Path(cfg.output)
    out.mkdir(parents=True, exist_ok=True)
    version = resolve_version(cfg.model)
    identity = {"input": str(source.path.resolve()), "inputs_digest": source.digest(), "n_inputs": len(source.ids),
                "model": cfg.model, "model_version": version, "chunk_size": cfg.chunk_size}
    manifest = batch.Manifest(out, identity)
    model = load_model(cfg.model)
    resumed = manifest.state["run_id"]
    params = {"model": cfg.model, "model_version": version, "input": cfg.input, "output": str(out.resolve()),
              "chunk_size": cfg.chunk_size, "n_inputs": len(source.ids), "n_ignored_files": source.ignored}
    # a restart continues the killed job's run (recorded in the manifest) and logs nothing twice
    with entry_run(resolved, None, f"score-{source.path.name}", "serving", params=params, entry_point="score",
                   fresh=not resumed, run_id=resumed,
                   tags={"scored_model": cfg.model, "scored_version": version}) as run_id:
        if not resumed:
            manifest.set("run_id", run_id)
        done = sum(min(cfg.chunk_size, len(source.ids) - int(k) * cfg.chunk_size) for k in manifest.done)
        if done:
            log.info("resuming: %d of %d covers scored already (%s)", done, len(source.ids), out)
        with tqdm(total=len(source.ids), initial=done, desc=f"scoring {source.path.name}", unit="cover") as bar:
            summary = batch.run_batch(source, out, manifest, cfg.chunk_size, model.predict, bar.update)
        runs.log_metrics({"n_inputs": len(source.ids), "n_scored": summary["n_scored"],
                          "n_skipped": summary["n_skipped"], "n_ignored_files": source.ignored,
                          **{f"count_{g}": c for g, c in summary["genre_counts"].items()}})
        runs.log_json({k: v for k, v in summary.items() if k != "skipped"}, "score/summary.json")
        if summary["skipped"]:
            runs.log_table(pd.DataFrame(summary["skipped"], columns=["id", "reason"]), "score/skipped.csv")
    log.info("scored %d covers, skipped %d (%s); predictions in %s", summary["n_scored"], summary["n_skipped"],
             summary["genre_counts"], out.resolve())
    return {"run_id": run_id, "output": str(out), **summary}


def score_on_spark(resolved: Resolved, cfg: ScoreConfig) -> dict:
    """The same model through ``mlflow.pyfunc.spark_udf`` on Spark; the run logs the same summary."""
    version = resolve_version(cfg.model)
    params = {"model": cfg.model, "model_version": version, "input": cfg.input, "output": cfg.output,
              "engine": "spark", "spark_master": cfg.spark_master}
    with entry_run(resolved, None, f"score-spark-{Path(cfg.input.rstrip('/')).name}", "serving", params=params,
                   entry_point="score", tags={"scored_model": cfg.model, "scored_version": version,
                                              "engine": "spark"}) as run_id:
        summary = spark_score.run(cfg)
        runs.log_metrics({"n_scored": summary["n_scored"], "n_skipped": summary["n_skipped"],
                          **{f"count_{g}": c for g, c in summary["genre_counts"].items()}})
        runs.log_json({k: v for k, v in summary.items() if k != "skipped"}, "score/summary.json")
    log.info("spark: scored %d covers, skipped %d (%s) -> %s", summary["n_scored"], summary["n_skipped"],
             summary["genre_counts"], cfg.output)
    return {"run_id": run_id, "output": cfg.output, **summary}
