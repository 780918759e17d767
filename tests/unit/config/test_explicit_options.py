"""Explicit options always win, and every option explains itself."""
from __future__ import annotations

import re
from dataclasses import fields
from pathlib import Path

import pytest

from genreclf import config as C
from genreclf.cli import get_args_parser

ROOT = Path(__file__).resolve().parents[3]


def test_explicit_value_equal_to_the_default_beats_the_config_file():
    quick = ROOT / "experiments" / "quickstart.yaml"
    file_epochs = C.load_config_file(quick)["cnn"]["epochs"]
    default = C.CNNConfig().epochs
    assert file_epochs != default  # otherwise this test would prove nothing
    assert C.resolve(str(quick), {"epochs": str(default)}, "cnn")["cnn"].epochs == default
    assert C.resolve(str(quick), {"epochs": None}, "cnn")["cnn"].epochs == file_epochs


@pytest.mark.parametrize("section", sorted(C.SECTIONS))
def test_every_parameter_has_one_line_of_help(section):
    for f in fields(C.SECTIONS[section]):
        text = f.metadata.get("help", "")
        assert len(text) > 10 and "\n" not in text, f"{section}.{f.name} has no help"


@pytest.mark.parametrize("option,words", [
    ("freeze", ["none", "backbone", "layer2"]), ("cache_size", ["pixels"]),
    ("workers", ["worker processes"]), ("keep_checkpoints", ["none", "best", "all"]),
])
def test_cnn_help_names_choices_and_units(option, words):
    sub = get_args_parser()._subparsers._group_actions[0].choices["train_cnn"]
    action = next(a for a in sub._actions if a.dest == option)
    for w in words:
        assert w in action.help, (option, action.help)


def test_mlproject_lists_every_parameter_with_its_help():
    text = (ROOT / "MLproject").read_text()
    shared = {f.name for f in fields(C.DataConfig)}  # one CLI option sets a name in every section (seed)
    for f in [f for f in fields(C.TuneConfig) if f.name not in shared]:
        assert re.search(rf"#   {f.name}: \w+ = .* - {re.escape(f.metadata['help'])}", text), f.name


def test_abbreviated_option_is_an_error(capsys):
    with pytest.raises(SystemExit):
        get_args_parser().parse_args(["train_cnn", "--epoch", "3"])
    assert "--epoch" in capsys.readouterr().err


def test_logged_params_have_one_seed_unless_they_differ():
    flat = C.as_flat_dict(C.DataConfig(), C.CNNConfig())
    assert flat["seed"] == 42 and "cnnconfig.seed" not in flat
    flat = C.as_flat_dict(C.DataConfig(), C.CNNConfig(seed=7))
    assert flat["cnnconfig.seed"] == 7
