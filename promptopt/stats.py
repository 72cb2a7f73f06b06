"""Confidence intervals for mean scores and paired tests of two prompts. Scores are never
reported without their n and CI.

Scores are floats in [0, 1]. Where every score is 0 or 1 (a plain accuracy) the interval
is Wilson's and the paired test McNemar's; with partial credit (a continuous metric) the
interval is Student's t of the mean and the paired test a sign-flip permutation test of
the mean difference, with a paired-bootstrap interval."""

from __future__ import annotations

import bisect
import itertools
import math
import operator
import random
import struct
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


def t_quantile(z: float, dof: int) -> float:
    """Student's t quantile matching the normal quantile ``z`` at ``dof`` degrees of
    freedom (Cornish-Fisher expansion; within 1% of the exact value from 3 dof on, 0.2% from 5)."""
    if dof <= 0:
        return math.inf
    if dof == 1:
        return math.tan(math.pi * (2 * _normal_cdf(z) - 1) / 2)
    if dof == 2:
        p = 2 * _normal_cdf(z) - 1
        return p * math.sqrt(2 / (1 - p * p))
    v = float(dof)
    return (
        z
        + (z**3 + z) / (4 * v)
        + (5 * z**5 + 16 * z**3 + 3 * z) / (96 * v**2)
        + (3 * z**7 + 19 * z**5 + 17 * z**3 - 15 * z) / (384 * v**3)
    )


def _normal_cdf(z: float) -> float:
    return 0.5 * (1 + math.erf(z / math.sqrt(2)))


def mean_interval_from_sums(total: float, sumsq: float, n: int, z: float = Z95) -> tuple[float, float, float]:
    """(mean, low, high) of continuous scores from their sum and sum of squares: the
    Student-t interval of a mean, clipped to [0, 1]. With one score, (score, 0, 1)."""
    if n <= 0:
        return 0.0, 0.0, 1.0
    mean = total / n
    if n == 1:
        return mean, 0.0, 1.0
    variance = max(0.0, (sumsq - n * mean * mean) / (n - 1))
    half = t_quantile(z, n - 1) * math.sqrt(variance / n)
    return mean, max(0.0, mean - half), min(1.0, mean + half)


def mean_interval(scores: Sequence[float], z: float = Z95) -> tuple[float, float, float]:
    """(mean, low, high): Wilson's interval when every score is 0 or 1; for continuous
    scores (partial credit) the Student-t interval of the mean."""
    n = len(scores)
    if n == 0:
        return 0.0, 0.0, 1.0
    mean = sum(scores) / n
    if all(s in (0.0, 1.0) for s in scores):
        low, high = wilson_interval(sum(scores), n, z)
        return mean, low, high
    return mean_interval_from_sums(sum(scores), sum(s * s for s in scores), n, z)


def binomial_two_sided_p(k: int, n: int) -> float:
    """Exact two-sided p-value of ``k`` successes in ``n`` fair coin flips."""
    if n == 0:
        return 1.0
    k = min(k, n - k)
    tail = sum(math.comb(n, i) for i in range(k + 1)) / 2**n
    return min(1.0, 2 * tail)


_DRAWS_AT_ONCE = 1 << 16


def _draw_indices(rng: random.Random, n: int, count: int) -> list[int]:
    """``[rng.randrange(n) for _ in range(count)]``: the same numbers, and ``rng`` left in
    the same state, in a few passes at C speed instead of ``count`` calls (a search's
    paired tests draw 600,000 of them: a third of the engine's own time per evaluation
    when drawn one by one).

    ``randrange(n)`` takes the top ``n.bit_length()`` bits of the generator's next 32-bit
    word, and takes the next word while that is ``>= n``; ``getrandbits(32 * m)`` returns
    the next ``m`` words, the first in the lowest bits. Words are drawn in blocks, the
    accepted ones kept, and the generator is then set to just after the last word used."""
    bits = n.bit_length()
    if bits > 32:
        return [rng.randrange(n) for _ in range(count)]
    shift = 32 - bits
    threshold = n << shift  # a word is accepted when below it
    start = rng.getstate()
    drawn: list[int] = []
    used = 0  # words used, counted from ``start``
    while len(drawn) < count:
        missing = count - len(drawn)
        # more than one block only by bad luck: over half the words are accepted, and the
        # block is over ten standard deviations above the words ``missing`` accepted ones take
        block = missing * (1 << bits) // n + 16 * math.isqrt(missing) + 64
        raw = rng.getrandbits(32 * block).to_bytes(4 * block, "little")
        marks = _accepted(raw, threshold)
        end = _end_of(marks, missing)
        if bits <= 8:  # the top byte is the whole draw (its low bits shifted out)
            table = bytes((b >> (8 - bits)) & 0xFF for b in range(256))
            drawn += raw[3 : 4 * end : 4].translate(table, bytes(range(threshold >> 24, 256)))
        elif bits <= 16:  # the top two bytes are
            top = bytearray(2 * end)
            top[0::2], top[1::2] = raw[2 : 4 * end : 4], raw[3 : 4 * end : 4]
            pairs = struct.unpack(f"<{end}H", top)
            drawn += map(operator.rshift, itertools.compress(pairs, marks), itertools.repeat(shift - 16))
        else:
            words = struct.unpack(f"<{end}I", raw[: 4 * end])
            drawn += map(operator.rshift, itertools.compress(words, marks), itertools.repeat(shift))
        used += end
    rng.setstate(start)
    if used:
        rng.getrandbits(32 * used)
    return drawn


def _accepted(raw: bytes, threshold: int) -> bytearray:
    """1 for each little-endian 32-bit word of ``raw`` below ``threshold``, else 0, decided by
    its top byte with bytes operations, and by the rest of the word only where the top
    byte equals the threshold's (one word in 256)."""
    edge, rest = threshold >> 24, threshold & 0xFFFFFF
    table = bytes(1 if b < edge else 2 if b == edge and rest else 0 for b in range(256))
    marks = bytearray(raw[3::4].translate(table))
    at = marks.find(2)
    while at >= 0:
        marks[at] = int.from_bytes(raw[4 * at : 4 * at + 3], "little") < rest
        at = marks.find(2, at + 1)
    return marks


def _end_of(marks: bytes | bytearray, wanted: int, step: int = 4096) -> int:
    """How many of ``marks`` (bytes 0 and 1) it takes to hold ``wanted`` ones (all of them
    when they hold fewer): counted a ``step`` at a time, then bisected in that step."""
    counts = itertools.accumulate(marks.count(1, i, i + step) for i in range(0, len(marks), step))
    chunk = next((c for c, total in enumerate(counts) if total >= wanted), None)
    if chunk is None:
        return len(marks)
    low = chunk * step
    before = marks.count(1, 0, low)
    return (
        bisect.bisect_left(
            range(low, min(low + step, len(marks)) + 1),
            wanted - before,
            key=lambda end: marks.count(1, low, end),
        )
        + low
    )


def paired_difference(
    a: Sequence[float], b: Sequence[float], *, resamples: int = 2000, seed: int = 0, z: float = Z95
) -> dict[str, float]:
    """Compare two prompts scored on the same examples (``a[i]`` and ``b[i]`` on item i).

    Returns the mean difference ``b - a`` with a 95% paired-bootstrap interval and a
    p-value: McNemar's exact test on the discordant pairs for 0/1 scores, else a
    sign-flip permutation test. Seeded, so a report is reproducible."""
    if len(a) != len(b):
        raise ValueError(f"paired scores need equal lengths, got {len(a)} and {len(b)}")
    n = len(a)
    if n == 0:
        return {"n": 0, "diff": 0.0, "ci_low": 0.0, "ci_high": 0.0, "p_value": 1.0}
    diffs = [y - x for x, y in zip(a, b, strict=True)]
    mean = sum(diffs) / n
    rng = random.Random(seed)
    value = diffs.__getitem__
    boot: list[float] = []
    step = max(1, _DRAWS_AT_ONCE // n)  # resamples drawn at once: memory bounded for any n
    for first in range(0, resamples, step):
        count = min(step, resamples - first)
        index = _draw_indices(rng, n, n * count)
        boot.extend(sum(map(value, index[r * n : (r + 1) * n])) / n for r in range(count))
    boot.sort()
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


def balanced_accuracy(scored: Sequence[tuple[str, float]]) -> float:
    """The mean over gold labels of the mean score of the items with that gold, from
    (gold, score) pairs: a constant answer gets 1/labels whatever the split's balance,
    where plain accuracy gives it that split's share of its label. 0.0 when empty."""
    by_gold: dict[str, list[float]] = {}
    for gold, score in scored:
        by_gold.setdefault(gold, []).append(score)
    if not by_gold:
        return 0.0
    return sum(sum(s) / len(s) for s in by_gold.values()) / len(by_gold)
