"""Racing: spend the evaluation budget on the candidates that may win.

Successive halving: every alive candidate is scored on the first ``start`` dev examples;
the better half (by mean score) goes on to twice as many examples, and so on, until
``keep`` candidates remain or the whole dev set is used. Examples are a fixed order, so
results on the first n examples are reused when a candidate goes on. Given the examples'
golds, a standing is the balanced accuracy instead of the mean (``--selection balanced``:
a lean toward the dev split's most common answer wins no stage).

The race only needs a scoring function, so it replays offline over a recorded matrix of
results as well as it runs live (see ``benchmarks/racing.py``).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

from promptopt.stats import balanced_accuracy

ScoreFn = Callable[[str, int], list[float | None]]
"""score(candidate_id, n) -> scores of that candidate on the first n dev examples."""


@dataclass(frozen=True)
class Standing:
    """A candidate's mean dev score over ``n`` scored examples (failures excluded); its
    balanced accuracy over them when the race is balanced."""

    candidate: str
    mean: float
    n: int
    order: int  # position in the pool; breaks ties deterministically


BatchScoreFn = Callable[[Sequence[str], int], Mapping[str, list[float | None]]]
"""score_many(candidate_ids, n) -> {candidate_id: scores on the first n dev examples}; a
parallel evaluator runs the candidates of one stage at the same time."""
PruneFn = Callable[[Standing], bool]
"""prune(standing) -> True to drop the candidate now (e.g. an Optuna pruner's verdict)."""


def standing(
    candidate: str, scores: Sequence[float | None], order: int, golds: Sequence[str] | None = None
) -> Standing:
    """``scores`` in example order; with ``golds`` (the same examples' gold answers) the
    standing's mean is the balanced accuracy (:func:`promptopt.stats.balanced_accuracy`)."""
    if golds is not None:
        pairs = [(g, s) for g, s in zip(golds, scores, strict=True) if s is not None]
        return Standing(candidate, balanced_accuracy(pairs), len(pairs), order)
    valid = [s for s in scores if s is not None]
    return Standing(candidate, sum(valid) / len(valid) if valid else 0.0, len(valid), order)


def rank(standings: Sequence[Standing]) -> list[Standing]:
    """Best first: higher mean, then more examples seen, then earlier in the pool."""
    return sorted(standings, key=lambda s: (-s.mean, -s.n, s.order))


def successive_halving(
    pool: Sequence[str],
    score: ScoreFn | None,
    dev_size: int,
    *,
    start: int = 10,
    eta: float = 2.0,
    keep: int = 1,
    score_many: BatchScoreFn | None = None,
    prune: PruneFn | None = None,
    golds: Sequence[str] | None = None,
) -> dict[str, Standing]:
    """Race ``pool``; returns every candidate's standing at the point it was dropped
    (survivors: on the most examples reached). Give ``score`` (one candidate at a time)
    or ``score_many`` (a whole stage at once). ``prune`` may drop a candidate after any
    stage in addition to the halving (never the last one alive). ``golds`` (the dev
    examples' gold answers, in order) makes every stage rank by balanced accuracy."""
    if score_many is None:
        if score is None:
            raise ValueError("successive_halving needs score or score_many")
        single = score

        def score_many(candidates: Sequence[str], n: int) -> Mapping[str, list[float | None]]:
            return {c: single(c, n) for c in candidates}

    alive = list(dict.fromkeys(pool))
    order = {c: i for i, c in enumerate(alive)}
    results: dict[str, Standing] = {}
    n = min(max(1, start), dev_size)
    while alive:
        stage = score_many(alive, n)
        for candidate in alive:
            results[candidate] = standing(
                candidate, stage[candidate], order[candidate], None if golds is None else golds[:n]
            )
        if prune is not None:
            kept = [c for c in alive if not prune(results[c])]
            alive = kept or [rank([results[c] for c in alive])[0].candidate]
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
