"""Typed configuration for every entry point, and how it is resolved.

Precedence, lowest to highest: the dataclass defaults below, then the section of an experiment
config file (``config=experiments/<name>.yaml``), then parameters given explicitly.

MLproject passes *every* declared parameter, including the ones the user did not touch, so a value
equal to the built-in default is treated as "not given" and does not override the config file.
(The MLproject defaults are the dataclass defaults; ``tests/test_config.py`` keeps them in sync.)
"""
from __future__ import annotations

import dataclasses
import re
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

import yaml

from genreclf import bounds
from genreclf.errors import UserError

DEFAULT_DATA = "hf:eong/20k-Album-Covers-within-20-Genres"
DEFAULT_GENRES = "HipHop,Rock,Pop,Electronic"


class ConfigError(UserError):
    """A configuration file or parameter is wrong; the message names it."""


@dataclass
class DataConfig:
    data: str = DEFAULT_DATA          # hf:<name> | path to parquet/shards | image folder | synthetic[:N]
    genres: str = DEFAULT_GENRES      # comma-separated, case-insensitive
    per_genre: int = 0                # cap per genre after de-duplication (0 = all)
    seed: int = 42                    # split seed (and the default model seed)
    val_frac: float = 0.15
    test_frac: float = 0.15
    cache_size: int = 256             # side of the decoded covers kept in the on-disk cache
    dedup_distance: int = 4           # max Hamming distance of 64-bit perceptual hashes for "same cover"
    experiment: str = "album-genre"   # MLflow experiment name


@dataclass
class RFConfig:
    n_estimators: int = 300
    max_depth: int = 20               # 0 = unlimited
    min_samples_leaf: int = 1
    max_features: str = "sqrt"        # sqrt | log2 | <float share> | <int count>
    class_weight: str = "balanced"    # none | balanced | balanced_subsample
    seed: int = 42
    n_jobs: int = -1
    register: bool = True


@dataclass
class CNNConfig:
    backbone: str = "resnet18"
    pretrained: bool = True
    weights_path: str = ""            # local state_dict instead of downloading weights
    freeze: str = "none"              # none | backbone | up to a stage, e.g. layer2
    lp_epochs: int = 0                # linear-probe warm-up epochs (backbone frozen) before unfreezing
    epochs: int = 10
    batch_size: int = 32
    lr: float = 1e-3
    backbone_lr_mult: float = 0.1
    weight_decay: float = 0.05
    warmup_epochs: int = 1
    label_smoothing: float = 0.1
    image_size: int = 224
    trivial_augment: bool = True
    aug_scale_min: float = 0.5        # RandomResizedCrop lower scale bound (augmentation strength)
    patience: int = 4                 # early stopping on val macro-F1 (0 = off)
    tta: bool = True                  # flip test-time augmentation
    device: str = "auto"              # auto | cpu | cuda | mps
    workers: int = -1                 # loader workers (-1 = auto)
    seed: int = 42
    resume: str = ""                  # MLflow run id to resume
    gradcam_per_genre: int = 4
    register: bool = True
    max_steps_per_epoch: int = 0      # cap for smoke tests and benchmarks (0 = full epoch)


@dataclass
class TuneConfig:
    n_trials: int = 20
    timeout: float = 0.0              # seconds (0 = none)
    study_name: str = ""              # default: <model>-<data digest prefix>
    storage: str = ""                 # default: journal file next to the MLflow store
    n_workers: int = 1
    pruner: str = "median"            # median | hyperband | none
    space: str = ""                   # YAML search space (default experiments/space_<model>.yaml)
    cv_folds: int = 3
    seed: int = 42
    heartbeat_interval: int = 60      # RDB storages: seconds between a running trial's heartbeats
    grace_period: int = 300           # RDB storages: a trial silent this long is failed and retried


@dataclass
class PromoteConfig:
    model_name: str = "album-genre-cnn"
    margin: float = 0.0               # challenger must beat champion's test macro-F1 by more than this
    metric: str = "test_macro_f1"


@dataclass
class ServeConfig:
    host: str = "127.0.0.1"           # binding anything else is an explicit choice
    port: int = 7860
    alias: str = "champion"           # registry alias the demo loads both models by
    max_upload_mb: float = 10.0


@dataclass
class ScoreConfig:
    model: str = "models:/album-genre-cnn@champion"
    input: str = ""                   # folder of cover images (recursive) or parquet with a binary column 'image'
    output: str = "predictions"       # folder: part-*.parquet + manifest.json (same output = resume)
    chunk_size: int = 256             # covers per part file (the unit of progress and of resume)
    engine: str = "local"             # local (resumable parts) | spark (mlflow spark_udf; see serving/spark_score.py)
    spark_master: str = ""            # e.g. local[2]; empty: spark-submit's --master
    experiment: str = "album-genre"   # MLflow experiment of the scoring run


@dataclass
class BenchConfig:
    sizes: str = "500,1000,2000"      # covers per measurement, for the scaling curve
    repeats: int = 3                  # the median of this many runs is reported
    quick: bool = False               # smaller sizes and fewer repeats (tests)
    backbone: str = "resnet18"        # the CNN trained, served and timed (untrained weights: speed only)
    image_size: int = 128             # CNN input side: resnet18 at 128 px keeps the bench < 10 min on 2 cores
    batch_size: int = 32
    rest_requests: int = 64           # fixed number of REST requests of the bounded load
    data_sizes: str = "2000,10000,50000"  # covers for the data-layer scaling figures (time, peak memory)
    stages: str = "all"               # comma-separated subset of the stages (features,pipeline,...,datalayer)


@dataclass
class BoostConfig:
    seed: int = 42
    n_jobs: int = -1
    register: bool = True


@dataclass
class EvaluateConfig:
    repeats: int = 5                  # repeated stratified splits (seeds seed, seed + 1, ...)
    models: str = "majority,rf_reference,rf_ours,cnn,boost"
    cnn_size: int = 64                # the from-scratch CNN's input side (small: 2 CPU cores)
    cnn_epochs: int = 6
    learning_curve: str = ""          # training covers per genre, e.g. 25,50,100 ("" = no curve; all is added)
    curve_models: str = "rf_ours,boost"
    speed_covers: int = 32            # covers timed for the feature-extraction speed ratio (0 = skip)


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


def read_yaml(p: Path, what: str, example: str) -> Any:
    """Parse a YAML file; a missing or malformed file is a ConfigError naming it."""
    if not p.is_file():
        raise ConfigError(f"{what} not found: {p} (expected e.g. {example})")
    try:
        return yaml.safe_load(p.read_text(encoding="utf-8")) or {}
    except yaml.YAMLError as exc:
        raise ConfigError(f"{what} {p} is not valid YAML: {exc}") from None
    except UnicodeDecodeError:
        raise ConfigError(f"{what} {p} is not a text file (not UTF-8); expected YAML") from None


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


def coerce(cls: type, name: str, value: Any) -> Any:
    default = getattr(cls(), name)
    if value is None:
        return None
    try:
        if isinstance(default, bool):
            if isinstance(value, str):
                low = value.strip().lower()
                if low not in {"true", "false", "1", "0", "yes", "no"}:
                    raise ValueError(value)
                return low in {"true", "1", "yes"}
            return bool(value)
        if isinstance(default, int):
            if isinstance(value, bool) or (isinstance(value, float) and not value.is_integer()):
                raise ValueError(value)  # `epochs: 2.7` is not silently 2
            return int(value)
        if isinstance(default, float):
            if isinstance(value, bool):
                raise ValueError(value)
            return float(value)
        return str(value)
    except (TypeError, ValueError):
        raise ConfigError(f"parameter {name}={value!r}: expected {type(default).__name__}") from None


def build(cls: type, file_section: dict[str, Any] | None = None, explicit: dict[str, Any] | None = None):
    """Resolve one dataclass: defaults < file section < explicit values that differ from defaults."""
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
        val = coerce(cls, key, val)
        if val != getattr(defaults, key) or key not in values:
            values[key] = val
    resolved = dataclasses.replace(defaults, **values)
    problem = bounds.problem(resolved)
    if problem:
        raise ConfigError(problem)
    return resolved


def resolve(config_path: str | None, explicit: dict[str, Any], *section_names: str) -> dict[str, Any]:
    """Resolve several sections at once from one flat dict of explicit parameters."""
    sections = load_config_file(config_path)
    return {name: build(SECTIONS[name], sections.get(name), explicit) for name in section_names}


def redact(value: Any) -> Any:
    """A URL's password (``scheme://user:secret@host``) replaced by ``***``; other values unchanged.

    Used wherever a configuration is written (the run's config.yaml, logged parameters)."""
    if isinstance(value, str):
        return re.sub(r"://([^:/@\s]*):[^@/\s]*@", r"://\1:***@", value)
    return value


def as_flat_dict(*configs) -> dict[str, Any]:
    """Flatten dataclasses for logging as MLflow params (section-prefixed only on collisions)."""
    out: dict[str, Any] = {}
    for cfg in configs:
        for key, val in dataclasses.asdict(cfg).items():
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
