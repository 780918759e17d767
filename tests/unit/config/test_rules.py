"""Every parameter declares its allowed values beside it, and the one check at resolve time enforces them."""
from __future__ import annotations

import math
from dataclasses import fields

import pytest

from genreclf import config as C
from genreclf import params
from genreclf.tuning.space import load_space

FIELDS = [(section, f.name) for section, cls in C.SECTIONS.items() for f in fields(cls)]
RANGES = [(s, n, params.rule_of(C.SECTIONS[s], n)) for s, n in FIELDS
          if params._is_range(params.rule_of(C.SECTIONS[s], n))]
CHOICES = [(s, n, r) for s, n in FIELDS if isinstance(r := params.rule_of(C.SECTIONS[s], n), tuple) and
           all(isinstance(c, str) for c in r)]


@pytest.mark.parametrize("section,name", FIELDS, ids=[f"{s}.{n}" for s, n in FIELDS])
def test_every_field_declares_a_rule(section, name):
    rule = params.rule_of(C.SECTIONS[section], name)
    assert rule is not None and params._is_rule(rule), f"{section}.{name} declares no rule"


def _outside(low: float, high: float, default) -> list:
    step = 1 if isinstance(default, int) else 0.5
    return [v for v, ok in ((low - step, math.isfinite(low)), (high + step, math.isfinite(high))) if ok]


@pytest.mark.parametrize("section,name,rule", RANGES, ids=[f"{s}.{n}" for s, n, _ in RANGES])
def test_a_value_outside_each_range_is_refused_naming_the_range(section, name, rule):
    cls = C.SECTIONS[section]
    low, high = rule
    for value in _outside(low, high, getattr(cls(), name)):
        with pytest.raises(C.ConfigError) as err:
            C.build(cls, None, {name: value})
        assert str(err.value).startswith(f"parameter {name}=") and params.allowed_range(low, high) in str(err.value)


@pytest.mark.parametrize("section,name,rule", CHOICES, ids=[f"{s}.{n}" for s, n, _ in CHOICES])
def test_a_bad_choice_is_refused_naming_the_choices(section, name, rule):
    with pytest.raises(C.ConfigError) as err:
        C.build(C.SECTIONS[section], None, {name: "no-such-choice"})
    assert str(err.value).startswith(f"parameter {name}='no-such-choice': choose one of ")
    assert all(c in str(err.value) for c in rule)


def test_choices_are_case_sensitive():
    with pytest.raises(C.ConfigError, match="choose one of none | balanced | balanced_subsample"):
        C.build(C.RFConfig, None, {"class_weight": "Balanced"})


@pytest.mark.parametrize("section,given,fragment", [
    ("rf", {"n_jobs": 0}, "parameter n_jobs=0: use -1 (all cores) or a count >= 1"),
    ("rf", {"max_features": "0"}, "parameter max_features='0': use sqrt, log2, all"),
    ("rf", {"max_features": "nan"}, "parameter max_features='nan'"),
    ("data", {"val_frac": 0.5, "test_frac": 0.5}, "val_frac + test_frac must be < 1"),
    ("tune", {"storage": "sqlite:///o.db", "n_workers": 2}, "SQLite cannot take 2 concurrent workers"),
    ("tune", {"storage": "http://host/db"}, "use a journal file path or a sqlite://"),
    ("tune", {"heartbeat_interval": 60, "grace_period": 60}, "parameter grace_period=60: must exceed heartbeat"),
])
def test_rules_beyond_ranges_and_choices(section, given, fragment):
    with pytest.raises(C.ConfigError) as err:
        C.build(C.SECTIONS[section], None, given)
    assert fragment in str(err.value)


@pytest.mark.parametrize("section,given", [
    ("rf", {"max_features": "0.5"}), ("rf", {"max_features": "7"}), ("rf", {"max_features": "all"}),
    ("tune", {"storage": "postgresql+psycopg2://u:p@db/optuna", "n_workers": 4}),
    ("tune", {"storage": "optuna/study.journal"}), ("cnn", {"freeze": "layer2", "backbone": "resnet18"}),
    ("probe", {"head": "svm", "backbone": "efficientnet_lite2", "n_jobs": 1}),
])
def test_good_values_pass(section, given):
    C.build(C.SECTIONS[section], None, given)


def test_a_refused_storage_url_keeps_its_password_out_of_the_message():
    with pytest.raises(C.ConfigError) as err:
        C.build(C.TuneConfig, None, {"storage": "redis://u:s3cret@db/0"})
    assert "s3cret" not in str(err.value) and "redis://u:***@db/0" in str(err.value)


def test_search_space_values_obey_the_field_rules(tmp_path):
    space = tmp_path / "space.yaml"
    space.write_text("class_weight: {type: categorical, choices: [balanced, heavy]}\n")
    with pytest.raises(C.ConfigError, match="'class_weight'.*choose one of none"):
        load_space(space, C.RFConfig)
    space.write_text("n_estimators: {type: int, low: 0, high: 100}\n")
    with pytest.raises(C.ConfigError, match=r"'n_estimators'.*allowed range is \[1, 100000\]"):
        load_space(space, C.RFConfig)


def test_resolved_gives_sections_by_name_and_by_type():
    resolved = C.Resolved("train_probe", C.resolve(None, {"head": "logistic"}, "data", "probe"))
    assert resolved.get(C.ProbeConfig).head == "logistic" and resolved.probe is resolved.section("probe")
    with pytest.raises(C.ConfigError, match="has no 'ensemble' section"):
        resolved.get(C.EnsembleConfig)


def test_every_rule_checked_later_names_a_real_function():
    import importlib
    later = {r[len(params.LATER):] for s, n in FIELDS
             if isinstance(r := params.rule_of(C.SECTIONS[s], n), str) and r.startswith(params.LATER)}
    for where in later:
        try:  # a whole module (one stage of the bench) ...
            importlib.import_module(where)
        except ModuleNotFoundError:  # ... or one function of a module checks it
            module, _, name = where.rpartition(".")
            assert callable(getattr(importlib.import_module(module), name)), where
