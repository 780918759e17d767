"""Interleaved A/B repeats: the order alternates, the ratio is the median of paired ratios, noise is flagged."""
from __future__ import annotations

import pytest

from genreclf.bench import ab


def test_order_alternates_between_repeats():
    calls = []
    times = ab.interleaved({"a": lambda: calls.append("a"), "b": lambda: calls.append("b")}, 4)
    assert calls == ["a", "b", "b", "a", "a", "b", "b", "a"]
    assert len(times["a"]) == len(times["b"]) == 4 and all(w >= 0 and c >= 0 for w, c in times["a"])


def test_median_of_paired_ratios_ignores_one_burst_and_flags_spread():
    # repeat 3 hit side A with a burst: the pairs say 2x, the medians of each side would say 2.6x
    a = [1.0, 1.1, 5.0, 0.9, 1.0]
    b = [2.0, 2.2, 10.0, 1.8, 2.0]
    p = ab.paired(b, a)
    assert p["ratio"] == pytest.approx(2.0) and p["min"] == p["max"] == pytest.approx(2.0)
    assert not p["noisy"] and p["n"] == 5
    noisy = ab.paired([2.0, 3.0, 1.0, 2.5, 1.2], [1.0] * 5)
    assert noisy["noisy"] and noisy["rel_iqr"] > ab.NOISY
    assert "IQR 1.2-2.5" in ab.spread_cell(noisy) and "(n=5)" in ab.spread_cell(noisy)
