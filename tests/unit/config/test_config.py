"""Config precedence, YAML validation, and MLproject kept in sync with the code."""
from __future__ import annotations

import pytest
import yaml
from helpers import ROOT

from genreclf import config as C


def test_mlproject_is_generated_from_the_code():
    from genreclf.commands import mlproject_text
    assert (ROOT / "MLproject").read_text().strip() == mlproject_text().strip(), \
        "MLproject is stale: run `genreclf mlproject > MLproject`"


def test_mlproject_entry_points_are_thin_cli_calls():
    from genreclf.commands import commands
    spec = yaml.safe_load((ROOT / "MLproject").read_text())
    assert set(spec["entry_points"]) == set(commands())
    for name, ep in spec["entry_points"].items():
        # no declared parameters: `mlflow run` passes exactly the -P given, as --name value
        assert ep == {"command": f"genreclf {name}"}, name


def test_precedence_defaults_file_explicit(tmp_path):
    f = tmp_path / "exp.yaml"
    f.write_text("data:\n  data: synthetic:10\n  per_genre: 5\ncnn:\n  epochs: 7\n  pretrained: false\n")
    out = C.resolve(str(f), {"epochs": "3", "per_genre": "0", "lr": None}, "data", "cnn")
    assert out["data"].data == "synthetic:10"
    assert out["cnn"].epochs == 3                 # explicit beats file
    assert out["data"].per_genre == 0             # explicit, even equal to the default, beats file
    assert out["cnn"].pretrained is False and out["cnn"].lr == C.CNNConfig().lr


def test_every_experiment_yaml_is_valid():
    for f in sorted((ROOT / "experiments").glob("*.yaml")):
        if f.name.startswith("space_"):
            continue  # search spaces have their own format (tests/unit/tuning/test_space.py)
        sections = C.load_config_file(f)
        for name, values in sections.items():
            C.build(C.SECTIONS[name], values)


@pytest.mark.parametrize("text,match", [
    ("data:\n  dta: synthetic\n", "unknown parameter 'dta'"),
    ("modle:\n  x: 1\n", "unknown section"),
    ("cnn:\n  epochs: many\n", "epochs='many': expected int"),
    ("cnn:\n  pretrained: maybe\n", "pretrained='maybe': expected bool"),
    ("- a\n- b\n", "must be a mapping"),
])
def test_bad_config_files_name_the_problem(tmp_path, text, match):
    f = tmp_path / "bad.yaml"
    f.write_text(text)
    with pytest.raises(C.ConfigError, match=match):
        C.resolve(str(f), {}, "data", "cnn")


def test_missing_config_file():
    with pytest.raises(C.ConfigError, match="config file not found: nope.yaml"):
        C.load_config_file("nope.yaml")
