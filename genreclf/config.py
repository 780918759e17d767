"""Typed configuration for every entry point, and how it is resolved.

Precedence, lowest to highest: the dataclass defaults below, then the section of an experiment
config file (``config=experiments/<name>.yaml``), then parameters given explicitly.

An explicit value always wins, also one equal to the built-in default: MLproject declares no
parameter defaults (``mlflow run`` passes only the ``-P`` the user gave, as ``--name value``), so
"given" means given. Each field's ``help`` metadata is the one description of a parameter: ``--help``
and the comments in MLproject are generated from it.
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

import yaml

from genreclf import bounds
from genreclf.params import ConfigError, coerce, opt, read_yaml, redact

DEFAULT_DATA = "hf:eong/20k-Album-Covers-within-20-Genres"
DEFAULT_GENRES = "HipHop,Rock,Pop,Electronic"


@dataclass
class DataConfig:
    data: str = opt(DEFAULT_DATA, "cover source: hf:<dataset> | parquet file or folder of shards | "
                    "image folder (one sub-folder per genre) | synthetic[:N per genre]")
    genres: str = opt(DEFAULT_GENRES, "comma-separated genre names, case-insensitive; 'all' = every genre")
    per_genre: int = opt(0, "covers per genre kept after de-duplication (0 = all)")
    seed: int = opt(42, "split seed (and the default model seed)")
    val_frac: float = opt(0.15, "share of covers in the validation split, 0-1")
    test_frac: float = opt(0.15, "share of covers in the test split, 0-1")
    cache_size: int = opt(256, "side in pixels of the decoded covers kept in the on-disk cache")
    dedup_distance: int = opt(4, "max Hamming distance (bits of a 64-bit perceptual hash) for 'same cover'")
    experiment: str = opt("album-genre", "MLflow experiment name (under `mlflow run`: --experiment-name decides)")


@dataclass
class RFConfig:
    n_estimators: int = opt(300, "trees in the forest")
    max_depth: int = opt(20, "max depth of a tree (0 = unlimited)")
    min_samples_leaf: int = opt(1, "minimum covers in a leaf")
    max_features: str = opt("sqrt", "features tried per split: sqrt | log2 | <float share 0-1> | <int count>")
    class_weight: str = opt("balanced", "none | balanced | balanced_subsample")
    seed: int = opt(42, "model seed (initialisation, sampling)")
    n_jobs: int = opt(-1, "CPU processes for fitting and feature extraction (-1 = all cores)")
    register: bool = opt(True, "register the model in the registry (true | false)")


@dataclass
class CNNConfig:
    backbone: str = opt("resnet18", "resnet18 | resnet34 | resnet50 | resnet101 | efficientnet_b0..b3 | "
                        "convnext_tiny | convnext_small")
    pretrained: bool = opt(True, "start from ImageNet weights (true | false; false = from scratch)")
    weights_path: str = opt("", "local state_dict file used instead of downloading the ImageNet weights")
    freeze: str = opt("none", "none | backbone | a stage name (e.g. layer2): freeze up to and including it")
    lp_epochs: int = opt(0, "linear-probe warm-up epochs (backbone frozen) before unfreezing")
    epochs: int = opt(10, "training epochs (max, with early stopping)")
    batch_size: int = opt(32, "covers per training batch")
    lr: float = opt(1e-3, "peak learning rate of the head (AdamW)")
    backbone_lr_mult: float = opt(0.1, "backbone learning rate = lr x this")
    weight_decay: float = opt(0.05, "AdamW weight decay (not on norms/biases)")
    warmup_epochs: int = opt(1, "epochs of linear learning-rate warm-up before the cosine decay")
    label_smoothing: float = opt(0.1, "label smoothing of the cross-entropy, 0-1")
    image_size: int = opt(224, "CNN input side in pixels")
    trivial_augment: bool = opt(True, "TrivialAugment on training covers (true | false)")
    aug_scale_min: float = opt(0.5, "RandomResizedCrop lower area bound, 0-1 (augmentation strength)")
    patience: int = opt(4, "early stopping: epochs without val macro-F1 gain (0 = off)")
    tta: bool = opt(True, "flip test-time augmentation (true | false)")
    device: str = opt("auto", "auto | cpu | cuda | mps")
    workers: int = opt(-1, "data-loader worker processes (-1 = auto: 0 on CPU, up to 8 on GPU)")
    seed: int = opt(42, "model seed (initialisation, sampling)")
    resume: str = opt("", "MLflow run id of an unfinished train_cnn run to continue")
    gradcam_per_genre: int = opt(4, "test covers per genre in each Grad-CAM gallery (0 = none)")
    register: bool = opt(True, "register the model in the registry (true | false)")
    max_steps_per_epoch: int = opt(0, "cap of training batches per epoch, for smoke tests (0 = full epoch)")
    keep_checkpoints: str = opt("none", "checkpoints kept after a successful run: none | best | all "
                                "(an unfinished run keeps last.pt + best.pt for resume)")


@dataclass
class TuneConfig:
    n_trials: int = opt(20, "finished trials the study should hold (a resumed study counts its earlier ones)")
    timeout: float = opt(0.0, "seconds after which no new trial starts (0 = none)")
    study_name: str = opt("", "Optuna study name; the same name resumes it (default: <model>-<data digest>)")
    storage: str = opt("", "Optuna storage: journal file path or postgresql:// / mysql:// URL "
                       "(default: a journal file under ./optuna/)")
    n_workers: int = opt(1, "worker processes running trials on this host")
    pruner: str = opt("median", "median | hyperband | none")
    space: str = opt("", "YAML search space (default: experiments/space_<model>.yaml)")
    cv_folds: int = opt(3, "RF objective: stratified folds on the train split")
    seed: int = opt(42, "sampler (TPE) seed")
    heartbeat_interval: int = opt(60, "RDB storages: seconds between a running trial's heartbeats")
    grace_period: int = opt(300, "RDB storages: a trial silent this long (seconds) is failed and retried")


@dataclass
class PromoteConfig:
    model_name: str = opt("album-genre-cnn", "registered model to promote, or 'all'")
    margin: float = opt(0.0, "the challenger must beat the champion's metric by more than this (0-1)")
    metric: str = opt("test_macro_f1", "metric compared on the test split (higher is better)")


@dataclass
class ServeConfig:
    host: str = opt("127.0.0.1", "address the demo binds (anything else is an explicit choice)")
    port: int = opt(7860, "TCP port of the demo")
    alias: str = opt("champion", "registry alias both models are loaded by")
    max_upload_mb: float = opt(10.0, "largest uploaded cover, in MB")


@dataclass
class ScoreConfig:
    model: str = opt("models:/album-genre-cnn@champion",
                     "model URI to score with (models:/<name>@<alias> or runs:/...)")
    input: str = opt("", "folder of cover images (recursive) or parquet with a binary column 'image'")
    output: str = opt("predictions", "folder: part-*.parquet + manifest.json (the same output resumes)")
    chunk_size: int = opt(256, "covers per part file (the unit of progress and of resume)")
    engine: str = opt("local", "local (resumable parts) | spark (mlflow spark_udf; see serving/spark_score.py)")
    spark_master: str = opt("", "Spark master, e.g. local[2]; empty: spark-submit's --master")
    experiment: str = opt("album-genre", "MLflow experiment of the scoring run")


@dataclass
class BenchConfig:
    sizes: str = opt("500,1000,2000", "comma-separated covers per measurement (the scaling curve)")
    repeats: int = opt(3, "runs per measurement; the median is reported")
    quick: bool = opt(False, "smaller sizes and fewer repeats (true | false; for tests)")
    backbone: str = opt("resnet18", "the CNN trained, served and timed (untrained weights: speed only)")
    image_size: int = opt(128, "CNN input side in pixels (128 keeps the bench < 10 min on 2 cores)")
    batch_size: int = opt(32, "covers per batch")
    rest_requests: int = opt(64, "REST requests of the bounded load")
    data_sizes: str = opt("2000,10000,50000", "comma-separated covers for the data-layer scaling figures "
                          "(time, peak memory)")
    stages: str = opt("all", "comma-separated subset of the stages (features,pipeline,...,datalayer); all = every one")


@dataclass
class BoostConfig:
    seed: int = opt(42, "seed of the forests and the SVM")
    n_jobs: int = opt(-1, "CPU cores for the forests (-1 = all)")
    register: bool = opt(True, "register the model as album-genre-boost @challenger (true | false)")


@dataclass
class EvaluateConfig:
    repeats: int = opt(5, "repeated stratified splits (seeds seed, seed + 1, ...)")
    models: str = opt("majority,rf_reference,rf_ours,cnn,boost", "comma-separated models compared side by side")
    cnn_size: int = opt(64, "the from-scratch CNN's input side in pixels (>= 32; small on CPU)")
    cnn_epochs: int = opt(6, "epochs of the from-scratch CNN per split")
    learning_curve: str = opt("", "training covers per genre, e.g. 25,50,100 (empty = no curve; all is added)")
    curve_models: str = opt("rf_ours,boost", "comma-separated models of the learning curve")
    speed_covers: int = opt(32, "covers timed for the feature-extraction speed ratio (0 = skip)")


SECTIONS: dict[str, type] = {
    "data": DataConfig,
    "rf": RFConfig,
    "cnn": CNNConfig,
    "tune": TuneConfig,
    "promote": PromoteConfig,
    "serve": ServeConfig,
    "bench": BenchConfig,
    "evaluate": EvaluateConfig,
    "boost": BoostConfig,
    "score": ScoreConfig,
}


def load_config_file(path: str | Path | None) -> dict[str, dict[str, Any]]:
    """Read an experiment YAML: a mapping of section name -> mapping of parameters."""
    if not path:
        return {}
    p = Path(path)
    raw = read_yaml(p, "config file", "experiments/quickstart.yaml")
    if not isinstance(raw, dict):
        raise ConfigError(f"config file {p} must be a mapping of sections {sorted(SECTIONS)}")
    unknown = set(raw) - set(SECTIONS) - {"description"}
    if unknown:
        raise ConfigError(f"config file {p}: unknown section(s) {sorted(unknown)}; known: {sorted(SECTIONS)}")
    for name, body in raw.items():
        if name != "description" and body is not None and not isinstance(body, dict):
            raise ConfigError(f"config file {p}: section {name!r} must be a mapping of parameters, "
                              f"got a {type(body).__name__}")
    return {k: v or {} for k, v in raw.items() if k != "description"}


def build(cls: type, file_section: dict[str, Any] | None = None, explicit: dict[str, Any] | None = None):
    """Resolve one dataclass: defaults < file section < explicit values (None = not given)."""
    names = {f.name for f in fields(cls)}
    defaults = cls()
    values: dict[str, Any] = {}
    for key, val in (file_section or {}).items():
        if key not in names:
            raise ConfigError(f"unknown parameter {key!r} for {cls.__name__}; known: {sorted(names)}")
        values[key] = coerce(cls, key, val)
    for key, val in (explicit or {}).items():
        if key not in names or val is None:
            continue
        values[key] = coerce(cls, key, val)
    resolved = dataclasses.replace(defaults, **values)
    problem = bounds.problem(resolved)
    if problem:
        raise ConfigError(problem)
    return resolved


def resolve(config_path: str | None, explicit: dict[str, Any], *section_names: str) -> dict[str, Any]:
    """Resolve several sections at once from one flat dict of explicit parameters."""
    sections = load_config_file(config_path)
    return {name: build(SECTIONS[name], sections.get(name), explicit) for name in section_names}


def as_flat_dict(*configs) -> dict[str, Any]:
    """Flatten dataclasses for logging as MLflow params (section-prefixed only on collisions that differ:
    one ``seed`` when data, model and tuner share it, not ``seed`` + ``cnnconfig.seed``)."""
    out: dict[str, Any] = {}
    for cfg in configs:
        for key, val in dataclasses.asdict(cfg).items():
            if key in out and out[key] == val:
                continue
            out[key if key not in out else f"{type(cfg).__name__.lower()}.{key}"] = redact(val)
    return out


@dataclass
class Resolved:
    """The resolved configuration of one entry point, logged to its run as ``config.yaml``."""
    entry_point: str
    sections: dict[str, Any] = field(default_factory=dict)

    def section(self, name: str):
        """The typed section ``name`` of this entry point (a ConfigError if the entry point has none)."""
        try:
            return self.sections[name]
        except KeyError:
            raise ConfigError(f"entry point {self.entry_point!r} has no {name!r} section") from None

    @property
    def data(self) -> DataConfig:
        return self.section("data")

    @property
    def rf(self) -> RFConfig:
        return self.section("rf")

    @property
    def cnn(self) -> CNNConfig:
        return self.section("cnn")

    @property
    def tune(self) -> TuneConfig:
        return self.section("tune")

    @property
    def promote(self) -> PromoteConfig:
        return self.section("promote")

    @property
    def serve(self) -> ServeConfig:
        return self.section("serve")

    @property
    def score(self) -> ScoreConfig:
        return self.section("score")

    @property
    def bench(self) -> BenchConfig:
        return self.section("bench")

    @property
    def boost(self) -> BoostConfig:
        return self.section("boost")

    @property
    def evaluate(self) -> EvaluateConfig:
        return self.section("evaluate")

    def to_yaml(self) -> str:
        body = {name: {k: redact(v) for k, v in dataclasses.asdict(cfg).items()} for name, cfg in self.sections.items()}
        return yaml.safe_dump({"entry_point": self.entry_point, **body}, sort_keys=False)
