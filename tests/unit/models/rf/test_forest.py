"""The forest's own pieces without a store: the fast macro-F1 and the forest parameters' rules."""
from __future__ import annotations

import numpy as np
import pytest

from genreclf import config as C
from genreclf.config import ConfigError, RFConfig
from genreclf.models.rf import forest as baseline


def test_fast_macro_f1_equals_sklearn():
    from sklearn.metrics import f1_score
    rng = np.random.default_rng(0)
    for _ in range(50):
        k, n = int(rng.integers(2, 6)), int(rng.integers(1, 40))
        y, p = rng.integers(0, k, n), rng.integers(0, k, n)
        expected = f1_score(y, p, labels=list(range(k)), average="macro", zero_division=0)
        assert baseline.macro_f1(y, p, k) == pytest.approx(expected, abs=1e-12)


@pytest.mark.parametrize("field,value,message", [("max_features", "most", "max_features='most'"),
                                                 ("max_features", "1.5", "max_features='1.5'"),
                                                 ("class_weight", "heavy", "class_weight='heavy'"),
                                                 ("n_estimators", 0, "n_estimators=0")])
def test_bad_forest_parameters_are_named(field, value, message):
    with pytest.raises(ConfigError, match=message):
        C.build(RFConfig, None, {field: value})
