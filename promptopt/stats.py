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


def binomial_two_sided_p(k: int, n: int) -> float:
    """Exact two-sided p-value of ``k`` successes in ``n`` fair coin flips."""
    if n == 0:
        return 1.0
    k = min(k, n - k)
    tail = sum(math.comb(n, i) for i in range(k + 1)) / 2**n
    return min(1.0, 2 * tail)


def paired_difference(
    a: Sequence[float], b: Sequence[float], *, resamples: int = 2000, seed: int = 0, z: float = Z95
) -> dict[str, float]:
    """Compare two prompts scored on the same examples (``a[i]`` and ``b[i]`` on item i).

    Returns the mean difference ``b - a`` with a 95% paired-bootstrap interval and a
    p-value: McNemar's exact test on the discordant pairs for 0/1 scores, else a
    sign-flip permutation test. Seeded, so a report is reproducible."""
    import random

    if len(a) != len(b):
        raise ValueError(f"paired scores need equal lengths, got {len(a)} and {len(b)}")
    n = len(a)
    if n == 0:
        return {"n": 0, "diff": 0.0, "ci_low": 0.0, "ci_high": 0.0, "p_value": 1.0}
    diffs = [y - x for x, y in zip(a, b, strict=True)]
    mean = sum(diffs) / n
    rng = random.Random(seed)
    boot = sorted(sum(diffs[rng.randrange(n)] for _ in range(n)) / n for _ in range(resamples))
    low = boot[int(0.025 * resamples)]
    high = boot[min(resamples - 1, int(0.975 * resamples))]
    if all(v in (0.0, 1.0) for v in (*a, *b)):
        gained = sum(1 for d in diffs if d > 0)
        lost = sum(1 for d in diffs if d < 0)
        p_value = binomial_two_sided_p(gained, gained + lost)
    else:
        observed = abs(mean)
        extreme = sum(
            1
            for _ in range(resamples)
            if abs(sum(d if rng.random() < 0.5 else -d for d in diffs) / n) >= observed - 1e-12
        )
        p_value = (extreme + 1) / (resamples + 1)
    return {"n": n, "diff": mean, "ci_low": low, "ci_high": high, "p_value": p_value}


def pareto_front(points: Sequence[tuple[float, float]]) -> list[int]:
    """Indices of the points no other point beats: fewer-or-equal tokens (x) and
    higher-or-equal accuracy (y), strictly better in one."""
    front = []
    for i, (x, y) in enumerate(points):
        dominated = any(
            (ox <= x and oy >= y) and (ox < x or oy > y) for j, (ox, oy) in enumerate(points) if j != i
        )
        if not dominated:
            front.append(i)
    return sorted(front, key=lambda i: points[i][0])
