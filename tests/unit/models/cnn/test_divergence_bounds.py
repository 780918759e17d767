"""The values that make training diverge are refused by the parameter rules, before any work
(the diverging run itself is checked against a real store in tests/integration/models/cnn/test_divergence.py)."""
from __future__ import annotations

import pytest

from genreclf import config as C


def test_bounds_refuse_the_probe_values_before_any_work():
    for name, value in (("lr", "inf"), ("max_steps_per_epoch", -1)):
        with pytest.raises(C.ConfigError, match=f"parameter {name}="):
            C.build(C.CNNConfig, None, {name: value})
