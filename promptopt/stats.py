"""Confidence intervals for accuracies. Scores are never reported without their n and CI."""

from __future__ import annotations

import math
from collections.abc import Sequence

Z95 = 1.959963984540054


def wilson_interval(successes: float, n: int, z: float = Z95) -> tuple[float, float]:
    """Wilson score interval for a proportion; (0, 1) when n is 0. Behaves well near 0
    and 1 and at small n, where the normal approximation does not."""
    if n <= 0:
        return 0.0, 1.0
    p = successes / n
    denominator = 1 + z * z / n
    centre = (p + z * z / (2 * n)) / denominator
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / denominator
    return max(0.0, centre - half), min(1.0, centre + half)


def mean_interval(scores: Sequence[float], z: float = Z95) -> tuple[float, float, float]:
    """(mean, low, high): Wilson for 0/1 scores, normal approximation otherwise."""
    n = len(scores)
    if n == 0:
        return 0.0, 0.0, 1.0
    mean = sum(scores) / n
    if all(s in (0.0, 1.0) for s in scores):
        low, high = wilson_interval(sum(scores), n, z)
        return mean, low, high
    variance = sum((s - mean) ** 2 for s in scores) / max(1, n - 1)
    half = z * math.sqrt(variance / n)
    return mean, max(0.0, mean - half), min(1.0, mean + half)
