"""Search spaces for ``tune_rf`` / ``tune_cnn``, read from YAML (``experiments/space_<model>.yaml``).

Each key is a parameter of the model's config section (``RFConfig`` / ``CNNConfig`` in
``genreclf/config.py``); each value is one of::

    n_estimators: {type: int, low: 100, high: 600, step: 50}        # step and log optional
    lr:           {type: float, low: 1.0e-4, high: 3.0e-3, log: true}
    freeze:       {type: categorical, choices: [none, layer2, backbone]}

Parameters not listed keep the value resolved from the config (defaults < experiment file < CLI).
Unknown parameter names and malformed entries raise ``ConfigError`` naming them.
"""
from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

from genreclf.params import ConfigError, coerce, problem, read_yaml, rule_of

DEFAULT_DIR = Path(__file__).resolve().parents[2] / "experiments"
KEYS = {"int": {"type", "low", "high", "step", "log"}, "float": {"type", "low", "high", "step", "log"},
        "categorical": {"type", "choices"}}


@dataclasses.dataclass
class SearchSpace:
    path: str
    specs: dict[str, dict[str, Any]]
    cls: type                                    # RFConfig or CNNConfig

    def suggest(self, trial) -> dict[str, Any]:
        """Sample one configuration; values come back typed like the config field."""
        out = {}
        for name, spec in self.specs.items():
            kind = spec["type"]
            if kind == "categorical":
                value = trial.suggest_categorical(name, spec["choices"])
            elif kind == "int":
                value = trial.suggest_int(name, int(spec["low"]), int(spec["high"]),
                                          step=int(spec.get("step", 1)), log=bool(spec.get("log", False)))
            else:
                value = trial.suggest_float(name, float(spec["low"]), float(spec["high"]),
                                            step=spec.get("step"), log=bool(spec.get("log", False)))
            out[name] = coerce(self.cls, name, value)
        return out

    def apply(self, base, params: dict[str, Any]):
        """``base`` config with ``params`` (as stored by Optuna) applied and typed."""
        return dataclasses.replace(base, **{k: coerce(self.cls, k, v) for k, v in params.items()})


def load_space(path: str | Path, cls: type) -> SearchSpace:
    p = Path(path)
    raw = read_yaml(p, "search space", "experiments/space_rf.yaml")
    if not isinstance(raw, dict) or not raw:
        raise ConfigError(f"search space {p} must map parameter names to {{type: ...}} entries")
    known = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(raw) - known)
    if unknown:
        raise ConfigError(f"search space {p}: unknown parameter(s) {unknown} for {cls.__name__}; "
                          f"known: {sorted(known)}")
    for name, spec in raw.items():
        _check(p, cls, name, spec)
    return SearchSpace(str(p), raw, cls)


def _check(path: Path, cls: type, name: str, spec: Any) -> None:
    where = f"search space {path}: parameter {name!r}"
    if not isinstance(spec, dict) or spec.get("type") not in KEYS:
        raise ConfigError(f"{where} needs {{type: int|float|categorical, ...}}, got {spec!r}")
    extra = set(spec) - KEYS[spec["type"]]
    if extra:
        raise ConfigError(f"{where}: unknown key(s) {sorted(extra)} for type {spec['type']}")
    if spec["type"] == "categorical":
        choices = spec.get("choices")
        if not isinstance(choices, list) or not choices:
            raise ConfigError(f"{where}: categorical needs a non-empty list 'choices'")
        values = choices
    else:
        if "low" not in spec or "high" not in spec:
            raise ConfigError(f"{where}: {spec['type']} needs 'low' and 'high'")
        try:
            low, high = float(spec["low"]), float(spec["high"])
        except (TypeError, ValueError):
            raise ConfigError(f"{where}: low/high must be numbers, got {spec['low']!r}/{spec['high']!r}") from None
        if low > high or (spec.get("log") and low <= 0):
            raise ConfigError(f"{where}: need low <= high (and low > 0 with log: true)")
        if spec.get("log") and spec.get("step") not in (None, 1):
            raise ConfigError(f"{where}: 'step' and 'log: true' cannot be combined")
        values = [spec["low"], spec["high"]]
    for value in values:  # the sampled values must fit the config field's type and rule (trials skip `build`)
        try:
            why = problem(name, coerce(cls, name, value), rule_of(cls, name) or "any", cls())
        except ConfigError as exc:
            why = str(exc)
        if why:
            raise ConfigError(f"{where}: {why}")
