"""Batch scoring on a Spark cluster: the registered model as ``mlflow.pyfunc.spark_udf``.

    spark-submit --master spark://<host>:7077 genreclf/cli.py score --engine spark \\
        --model "models:/album-genre-cnn@champion" --input hdfs:///covers/ --output hdfs:///predictions/

(``genreclf/cli.py`` is the driver script: the command line is parsed in one place, and the
``score`` entry point logs the run). Every executor needs this environment (genreclf, MLflow,
the model's libraries) and ``MLFLOW_TRACKING_URI`` of a server that proxies the artifacts.

Input: a folder of image files (read recursively as ``binaryFile``; id = the file path) or parquet
with a binary column ``image`` (and ``id``). Covers that do not decode are filtered out first and
counted, so one bad file cannot fail a task. Output: parquet (id, genre, p_<genre>...) written by
Spark's committer; a failed task is retried by Spark, a failed job is run again whole (no manifest).
pyspark is the optional extra ``genreclf[spark]``: it is imported only when a Spark job runs.
"""
from __future__ import annotations

import os
import sys

import mlflow.pyfunc
import pandas as pd

from genreclf.data.images import BadImageError, decode_rgb

IMAGE_SUFFIXES = "*.{jpg,jpeg,png,webp,bmp,gif,tif,tiff,JPG,JPEG,PNG}"


def read_covers(spark, path: str):
    """A DataFrame (id, image) of the covers at ``path``."""
    from pyspark.sql import functions as F
    if path.rstrip("/").endswith(".parquet"):
        frame = spark.read.parquet(path)
        if "id" not in frame.columns:
            frame = frame.withColumn("id", F.monotonically_increasing_id().cast("string"))
        return frame.select(F.col("id").cast("string"), "image")
    frame = (spark.read.format("binaryFile").option("recursiveFileLookup", "true")
             .option("pathGlobFilter", IMAGE_SUFFIXES).load(path))
    return frame.select(F.col("path").alias("id"), F.col("content").alias("image"))


def decodable(images: pd.Series) -> pd.Series:
    """pandas UDF body: whether each cover decodes (bad covers are counted and left out)."""
    def ok(raw) -> bool:
        try:
            decode_rgb(bytes(raw), size=32)
            return True
        except (BadImageError, TypeError):
            return False
    return pd.Series([ok(r) for r in images])


def score_frame(spark, model_uri: str, covers):
    """(predictions: id, genre, p_*; number of skipped covers) through the model's spark_udf."""
    from pyspark.sql import functions as F
    # a Series -> Series pandas UDF, typed by its hints (pandas has no stubs here, so mypy sees Any)
    check = F.pandas_udf(decodable, "boolean")  # type: ignore[call-overload]
    flagged = covers.withColumn("_ok", check("image")).cache()
    skipped = flagged.filter(~F.col("_ok")).count()
    # env_manager=local: the executors' own Python environment (this project's) runs the model
    udf = mlflow.pyfunc.spark_udf(spark, model_uri, env_manager="local")
    scored = flagged.filter("_ok").withColumn("_pred", udf(F.struct("image")))
    return scored.select("id", "_pred.*"), skipped


def run(cfg) -> dict:
    """``genreclf score --engine spark``: score, write parquet, return the counts (logged by the caller)."""
    from pyspark.sql import SparkSession
    os.environ.setdefault("PYSPARK_PYTHON", sys.executable)  # local executors: this interpreter
    builder = SparkSession.builder.appName("genreclf-score")
    if cfg.spark_master:
        builder = builder.master(cfg.spark_master)
    spark = builder.getOrCreate()
    preds, skipped = score_frame(spark, cfg.model, read_covers(spark, cfg.input))
    preds.write.mode("overwrite").parquet(cfg.output)
    counts = {r["genre"]: r["count"] for r in spark.read.parquet(cfg.output).groupBy("genre").count().collect()}
    return {"n_scored": sum(counts.values()), "n_skipped": skipped, "genre_counts": dict(sorted(counts.items())),
            "skipped": []}

