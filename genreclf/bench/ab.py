"""Comparisons that survive a noisy machine: interleaved A/B repeats and the median of paired ratios.

Timing A then B once, another job's burst can land on one side only. Here each repeat times every
contender back to back, alternating the order (A B, B A, ...), and each repeat gives one ratio; the
row reports the median of those paired ratios with their spread (quartiles and min-max). A burst
hits both halves of a pair alike or shows up as one outlying ratio, which the median ignores and the
spread exposes: a row whose relative IQR exceeds ``NOISY`` is flagged, so a table can be trusted or
visibly not.
"""
from __future__ import annotations

import statistics
import time
from typing import Callable, Hashable, Mapping, TypeVar

import numpy as np

K = TypeVar("K", bound=Hashable)
NOISY = 0.15  # relative interquartile range of the paired ratios above which a row is flagged


def timed(fn: Callable[[], object]) -> tuple[float, float]:
    """Wall-clock and CPU seconds (this process and its threads, not worker processes) of fn()."""
    wall, cpu = time.perf_counter(), time.process_time()
    fn()
    return time.perf_counter() - wall, time.process_time() - cpu


def interleaved(contenders: Mapping[K, Callable[[], object]], repeats: int) -> dict[K, list[tuple[float, float]]]:
    """(wall, cpu) seconds of each contender per repeat; the order alternates between repeats."""
    names = list(contenders)
    times: dict[K, list[tuple[float, float]]] = {name: [] for name in names}
    for r in range(max(1, repeats)):
        for name in (names if r % 2 == 0 else names[::-1]):
            times[name].append(timed(contenders[name]))
    return times


def paired(numerators: list[float], denominators: list[float]) -> dict:
    """Median of the per-repeat ratios numerator/denominator, with quartiles, min-max and a noisy flag."""
    ratios = np.asarray(numerators, dtype=float) / np.asarray(denominators, dtype=float)
    med = float(np.median(ratios))
    q1, q3 = (float(v) for v in np.percentile(ratios, [25, 75]))
    spread = (q3 - q1) / med if med else float("inf")
    return {"ratio": med, "q1": q1, "q3": q3, "min": float(ratios.min()), "max": float(ratios.max()),
            "rel_iqr": spread, "noisy": bool(spread > NOISY), "n": len(ratios), "ratios": ratios.tolist()}


def spread_cell(p: dict) -> str:
    return f"IQR {p['q1']:.3g}-{p['q3']:.3g}, min-max {p['min']:.3g}-{p['max']:.3g} (n={p['n']})"


def summary(times: list[tuple[float, float]]) -> dict:
    return {"median_s": statistics.median(w for w, _ in times), "median_cpu_s": statistics.median(c for _, c in times),
            "times_s": [w for w, _ in times], "cpu_s": [c for _, c in times]}
