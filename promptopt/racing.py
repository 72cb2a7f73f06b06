"""Racing: spend the evaluation budget on the candidates that may win.

Successive halving: every alive candidate is scored on the first ``start`` dev examples;
the better half (by mean score) goes on to twice as many examples, and so on, until
``keep`` candidates remain or the whole dev set is used. Examples are a fixed order, so
results on the first n examples are reused when a candidate goes on.

The race only needs a scoring function, so it replays offline over a recorded matrix of
results as well as it runs live (see ``benchmarks/racing.py``).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass

ScoreFn = Callable[[str, int], list[float | None]]
"""score(candidate_id, n) -> scores of that candidate on the first n dev examples."""


@dataclass(frozen=True)
class Standing:
    """A candidate's mean dev score over ``n`` scored examples (failures excluded)."""

    candidate: str
    mean: float
    n: int
    order: int  # position in the pool; breaks ties deterministically


def standing(candidate: str, scores: Sequence[float | None], order: int) -> Standing:
    valid = [s for s in scores if s is not None]
    return Standing(candidate, sum(valid) / len(valid) if valid else 0.0, len(valid), order)


def rank(standings: Sequence[Standing]) -> list[Standing]:
    """Best first: higher mean, then more examples seen, then earlier in the pool."""
    return sorted(standings, key=lambda s: (-s.mean, -s.n, s.order))


def successive_halving(
    pool: Sequence[str], score: ScoreFn, dev_size: int, *, start: int = 10, eta: float = 2.0, keep: int = 1
) -> dict[str, Standing]:
    """Race ``pool``; returns every candidate's standing at the point it was dropped
    (survivors: on the most examples reached)."""
    alive = list(dict.fromkeys(pool))
    order = {c: i for i, c in enumerate(alive)}
    results: dict[str, Standing] = {}
    n = min(max(1, start), dev_size)
    while alive:
        for candidate in alive:
            results[candidate] = standing(candidate, score(candidate, n), order[candidate])
        if len(alive) <= keep or n >= dev_size:
            break
        survivors = max(keep, math.ceil(len(alive) / eta))
        alive = [s.candidate for s in rank([results[c] for c in alive])[:survivors]]
        n = min(dev_size, math.ceil(n * eta))
    return results


def full_evaluation(pool: Sequence[str], score: ScoreFn, dev_size: int) -> dict[str, Standing]:
    """The reference without racing: every candidate on the whole dev set."""
    return {c: standing(c, score(c, dev_size), i) for i, c in enumerate(dict.fromkeys(pool))}


def schedule_size(pool_size: int, dev_size: int, *, start: int = 10, eta: float = 2.0, keep: int = 1) -> int:
    """Upper bound on (candidate, example) evaluations a race of ``pool_size`` needs."""
    total, alive, n, done = 0, pool_size, min(max(1, start), dev_size), 0
    while alive:
        total += alive * (n - done)
        if alive <= keep or n >= dev_size:
            break
        alive = max(keep, math.ceil(alive / eta))
        done = n
        n = min(dev_size, math.ceil(n * eta))
    return total
