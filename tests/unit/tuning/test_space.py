"""Search spaces: unknown or malformed parameters are named, the shipped spaces load."""
from __future__ import annotations

from pathlib import Path

import pytest
from helpers import ROOT

from genreclf.config import CNNConfig, ConfigError, RFConfig


def write(path: Path, text: str) -> str:
    path.write_text(text)
    return str(path)


def test_space_rejects_unknown_and_malformed_parameters(tmp_path):
    from genreclf.tuning.space import load_space
    with pytest.raises(ConfigError, match=r"unknown parameter\(s\) \['n_trees'\]"):
        load_space(write(tmp_path / "a.yaml", "n_trees: {type: int, low: 1, high: 5}\n"), RFConfig)
    with pytest.raises(ConfigError, match="'lr'.*low <= high"):
        load_space(write(tmp_path / "b.yaml", "lr: {type: float, low: 0.1, high: 0.01}\n"), CNNConfig)
    with pytest.raises(ConfigError, match="'batch_size'.*expected int"):
        load_space(write(tmp_path / "c.yaml", "batch_size: {type: categorical, choices: [16, big]}\n"), CNNConfig)
    for kind, cls in (("rf", RFConfig), ("cnn", CNNConfig)):  # the shipped spaces load
        assert load_space(ROOT / "experiments" / f"space_{kind}.yaml", cls).specs
