"""Choosing among candidates with their per-item scores, not their means alone.

Three uses:

- :func:`item_frontier` and :func:`frontier_weights`: the per-item Pareto frontier of
  the reflective policy (as in GEPA). For every dev item, the candidates that score best
  on it; a candidate that is best on some item keeps a chance to be chosen as a parent
  even when its mean is lower (an *item specialist*). Candidates that are best only where
  another frontier candidate is also best are dominated and dropped; the others are
  weighted by the number of items they are best on.
- :func:`noise_aware_pick`: the final pick. On a dev set of 30 items, the best mean is
  often best by luck. Every finalist is compared with the best one by a paired test on the
  items both have; those whose difference from the best is within the test's 95% band are
  *tied* with it, and among the tied ones the cheapest (fewest tokens per example) wins
  when it saves at least :data:`MIN_SAVING` of the best one's tokens.
- :func:`balanced_pick`: the final pick by balanced accuracy on dev (the mean over gold
  answers of each one's accuracy). A small model that leans on one answer scores that
  answer's share of the dev split; on 30 dev items of a six-option task the share can be
  twice the test split's, and the lean wins the race. Balanced accuracy gives a constant
  answer 1/labels whatever the split.

Scores are per-item vectors: ``{example_id: score}`` (failed evaluations left out).
"""

from __future__ import annotations

import random
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from promptopt.stats import paired_difference
from promptopt.types import EvalResult

ItemScores = Mapping[str, float]
MIN_SAVING = 0.10  # a tied candidate must save this share of tokens to be preferred
SELECTIONS = ("best", "noise-aware", "balanced")


def item_scores(results: Iterable[EvalResult]) -> dict[str, float]:
    """``{example_id: score}`` of scored results (failures left out)."""
    return {r.example_id: r.score for r in results if r.score is not None}


def item_frontier(scores: Mapping[str, ItemScores]) -> dict[str, set[str]]:
    """For every item that two candidates or more were scored on (any, when there is only
    one candidate): the candidates with the best score there (ties: all of them).
    ``scores`` maps candidate -> item -> score. An item only one candidate was scored on
    (one that went further in a race than the others) is no contest: counting it would
    make that candidate best there whatever its score."""
    best: dict[str, float] = {}
    seen: dict[str, int] = {}
    for per_item in scores.values():
        for item, score in per_item.items():
            best[item] = max(score, best.get(item, score))
            seen[item] = seen.get(item, 0) + 1
    if len(scores) > 1:
        best = {item: score for item, score in best.items() if seen[item] > 1}
    front: dict[str, set[str]] = {item: set() for item in best}
    for candidate, per_item in scores.items():
        for item, score in per_item.items():
            if item in best and score >= best[item]:
                front[item].add(candidate)
    return front


def _dominated(candidate: str, others: set[str], front: Mapping[str, set[str]]) -> bool:
    """True when on every item where ``candidate`` is best, one of ``others`` is best too."""
    return all(bool(best & others) for best in front.values() if candidate in best)


def frontier_weights(
    scores: Mapping[str, ItemScores], order: Sequence[str], means: Mapping[str, float] | None = None
) -> dict[str, int]:
    """``{candidate: items it is best on}`` for the non-dominated frontier candidates.

    Dominated candidates are removed one at a time, lowest mean first (ties in ``order``),
    so that of two candidates best on the same items the better one stays. ``order``
    fixes the iteration order (the result is deterministic)."""
    front = item_frontier(scores)
    members = [c for c in order if any(c in best for best in front.values())]
    means = means or {}
    by_mean = sorted(members, key=lambda c: (means.get(c, 0.0), -order.index(c)))
    kept = set(members)
    changed = True
    while changed:
        changed = False
        for candidate in by_mean:
            if candidate in kept and _dominated(candidate, kept - {candidate}, front):
                kept.discard(candidate)
                changed = True
                break
    weights = {c: sum(1 for best in front.values() if c in best) for c in members if c in kept}
    return {c: w for c, w in weights.items() if w > 0}


def sample_parent(weights: Mapping[str, int], order: Sequence[str], rng: random.Random) -> str:
    """A frontier candidate drawn with probability proportional to its weight (seeded)."""
    pool = [c for c in order if weights.get(c, 0) > 0]
    if not pool:
        raise ValueError("no frontier candidate to draw from")
    total = sum(weights[c] for c in pool)
    point = rng.random() * total
    for candidate in pool:
        point -= weights[candidate]
        if point < 0:
            return candidate
    return pool[-1]


def paired_on_shared(a: ItemScores, b: ItemScores, *, seed: int = 0) -> dict[str, float]:
    """The paired test of ``b - a`` on the items both were scored on (see
    :func:`promptopt.stats.paired_difference`), with ``n`` the shared items."""
    shared = sorted(set(a) & set(b))
    return paired_difference([a[i] for i in shared], [b[i] for i in shared], seed=seed, resamples=1000)


@dataclass(frozen=True)
class Finalist:
    """What the final pick knows of one candidate: its per-item dev scores and cost."""

    candidate: str
    scores: ItemScores
    tokens_per_example: float

    @property
    def mean(self) -> float:
        return sum(self.scores.values()) / len(self.scores) if self.scores else 0.0


def noise_aware_pick(
    finalists: Sequence[Finalist], best: str, *, seed: int = 0, min_saving: float = MIN_SAVING
) -> tuple[str, dict[str, Any]]:
    """The cheapest finalist tied with ``best`` (the best by mean), and the comparison.

    A finalist is tied when the 95% paired-bootstrap interval of its difference from the
    best, on the items both have, reaches 0 (``ci_high >= 0``). It replaces the best only
    if it saves at least ``min_saving`` of the best's tokens per example; among several,
    the cheapest. Returns ``(chosen, report)``: the report lists every finalist's
    difference, interval, p-value and tokens, for the run summary."""
    by_hash = {f.candidate: f for f in finalists}
    top = by_hash[best]
    rows = []
    tied = []
    for finalist in finalists:
        if finalist.candidate == best:
            continue
        test = paired_on_shared(top.scores, finalist.scores, seed=seed)
        is_tied = test["n"] > 0 and test["ci_high"] >= 0
        rows.append(
            {"candidate": finalist.candidate, "diff": test["diff"], "ci95": [test["ci_low"], test["ci_high"]],
             "p_value": test["p_value"], "n": test["n"], "tokens_per_example": finalist.tokens_per_example,
             "tied": is_tied}
        )  # fmt: skip
        if is_tied:
            tied.append(finalist)
    cheaper = [f for f in tied if f.tokens_per_example <= (1 - min_saving) * top.tokens_per_example]
    chosen = min(cheaper, key=lambda f: (f.tokens_per_example, -f.mean)).candidate if cheaper else best
    return chosen, {
        "best_by_mean": best,
        "chosen": chosen,
        "tokens_per_example": top.tokens_per_example,
        "min_saving": min_saving,
        "compared": rows,
    }


def balanced_pick(rows: Sequence[Any], known: Any) -> tuple[str, dict[str, float]]:
    """The finalist with the best balanced accuracy on dev (ties: the better mean, then
    the earlier row), and every finalist's balanced accuracy. For a free-form task, whose
    golds hardly repeat, it is close to the mean."""
    from promptopt.stats import balanced_accuracy

    balanced = {
        row.candidate.hash: balanced_accuracy(
            [(r.gold, r.score) for r in known(row.candidate, "dev") if r.score is not None]
        )
        for row in rows
    }
    order = {row.candidate.hash: i for i, row in enumerate(rows)}
    means = {row.candidate.hash: row.mean for row in rows}
    chosen = max(balanced, key=lambda h: (balanced[h], means[h], -order[h]))
    return chosen, balanced


def final_pick(
    selection: str,
    rows: Sequence[Any],
    winner: Any,
    known: Any,
    *,
    seed: int = 0,
) -> tuple[Any, dict[str, Any]]:
    """The search's winner under ``selection`` and the comparison behind it.

    ``rows`` are the finalists' leaderboard rows (whole dev set), ``winner`` the best by
    mean (the ``best`` pick), ``known(candidate, "dev")`` their results. The comparison
    is made under every selection (the summary says which finalists are tied with the
    best); ``noise-aware`` and ``balanced`` (:func:`balanced_pick`) change the winner."""
    if len(rows) < 2:
        return winner, {
            "selection": selection,
            "best_by_mean": winner.hash,
            "chosen": winner.hash,
            "compared": [],
        }
    finalists = [
        Finalist(row.candidate.hash, item_scores(known(row.candidate, "dev")), row.tokens_per_example)
        for row in rows
    ]
    chosen, report = noise_aware_pick(finalists, winner.hash, seed=seed)
    if selection == "balanced":
        chosen, balanced = balanced_pick(rows, known)
        report["balanced_accuracy"] = balanced
    elif selection != "noise-aware":
        chosen = winner.hash
    report.update(selection=selection, chosen=chosen)
    by_hash = {row.candidate.hash: row.candidate for row in rows}
    return by_hash.get(chosen, winner), report
