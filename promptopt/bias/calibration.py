"""The calibration math, on label log-probabilities; no model calls here.

Every function takes *scores*: a mapping label -> log-probability of that label as the
answer (any constant offset per item is fine: scores are normalised over the labels
first). A *prior* is a probability per label (or per option position) that the model
gives whatever the question; calibrating divides it out and renormalises:

    calibrated(y | x) ∝ p(y | x) / prior(y)

The three priors:

- **contextual** (Zhao et al. 2021, "Calibrate Before Use"): the mean of the label
  distributions the same prompt gives to content-free inputs ("N/A", "", "[MASK]");
- **batch** (Zhou et al. 2024, "Batch Calibration"): the mean of the label
  distributions over the batch being scored, no extra calls;
- **position** (Zheng et al. 2024, PriDe): for multiple choice, the prior over option
  *positions*, estimated from items scored under every cyclic shift of their options:
  in each shift every option content sits at each position once, so averaging an item's
  log-probabilities per position cancels the content and leaves the position's prior.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence


def log_normalize(scores: Mapping[str, float]) -> dict[str, float]:
    """Log-softmax over the labels: log-probabilities that sum to one."""
    if not scores:
        return {}
    top = max(scores.values())
    total = top + math.log(sum(math.exp(v - top) for v in scores.values()))
    return {label: value - total for label, value in scores.items()}


def probabilities(scores: Mapping[str, float]) -> dict[str, float]:
    """Softmax over the labels."""
    return {label: math.exp(value) for label, value in log_normalize(scores).items()}


def mean_distribution(items: Sequence[Mapping[str, float]]) -> dict[str, float]:
    """The mean of each item's label distribution (each normalised over its own labels);
    a label is averaged over the items that have it; the result sums to one."""
    sums: dict[str, float] = {}
    counts: dict[str, int] = {}
    for scores in items:
        for label, p in probabilities(scores).items():
            sums[label] = sums.get(label, 0.0) + p
            counts[label] = counts.get(label, 0) + 1
    means = {label: sums[label] / counts[label] for label in sums}
    total = sum(means.values())
    return {label: value / total for label, value in means.items()} if total > 0 else means


def contextual_prior(content_free: Sequence[Mapping[str, float]]) -> dict[str, float]:
    """Zhao et al.: the label prior is the mean distribution over content-free inputs."""
    return mean_distribution(content_free)


def batch_prior(batch: Sequence[Mapping[str, float]]) -> dict[str, float]:
    """Zhou et al.: the label prior is the mean distribution over the scored batch."""
    return mean_distribution(batch)


def calibrate(scores: Mapping[str, float], prior: Mapping[str, float]) -> dict[str, float]:
    """Calibrated log-probabilities: ``log p(y|x) - log prior(y)``, renormalised. A label
    without a prior keeps its score (prior 1 over the rest would be arbitrary)."""
    normalized = log_normalize(scores)
    shifted = {
        label: value - math.log(prior[label]) if prior.get(label, 0) > 0 else value
        for label, value in normalized.items()
    }
    return log_normalize(shifted)


def best_label(scores: Mapping[str, float]) -> str | None:
    """The label with the highest score; ties go to the first listed (deterministic)."""
    best: str | None = None
    for label, value in scores.items():
        if best is None or value > scores[best]:
            best = label
    return best


def average_orderings(orderings: Sequence[Mapping[str, float]]) -> dict[str, float]:
    """One item's label scores from its option orderings (each mapped back to the original
    letters): the mean over the orderings of each label's normalised log-probability.
    Under PriDe's model (a label's probability is its content's times its position's
    prior) the position term is the same for every label once each option has sat at each
    position equally often (every cyclic shift), so it cancels exactly; with fewer
    orderings it is averaged down. A label some ordering did not score is left out."""
    normalized = [log_normalize(scores) for scores in orderings if scores]
    if not normalized:
        return {}
    common = [label for label in normalized[0] if all(label in n for n in normalized)]
    return {label: sum(n[label] for n in normalized) / len(normalized) for label in common}


def item_position_prior(shifted: Sequence[Sequence[float]]) -> list[float]:
    """PriDe's prior of one item: ``shifted[s][i]`` is the log-probability the model gives
    position ``i`` when the options are cyclically shifted by ``s`` (all ``n`` shifts).
    The prior of position ``i`` is the softmax over positions of the mean of
    ``log_normalize(shifted[s])[i]`` over the shifts."""
    if not shifted:
        return []
    n = len(shifted[0])
    if any(len(row) != n for row in shifted):
        raise ValueError("every shift must score the same number of positions")
    normalized = [list(log_normalize({str(i): v for i, v in enumerate(row)}).values()) for row in shifted]
    means = {str(i): sum(row[i] for row in normalized) / len(normalized) for i in range(n)}
    return list(probabilities(means).values())


def position_prior(items: Sequence[Sequence[Sequence[float]]]) -> list[float]:
    """The position prior over several items: the mean of their item priors."""
    priors = [item_position_prior(item) for item in items if item]
    if not priors:
        return []
    n = len(priors[0])
    return [sum(p[i] for p in priors) / len(priors) for i in range(n)]


def calibrate_positions(scores: Sequence[float], prior: Sequence[float]) -> list[float]:
    """An item's per-position log-probabilities with the position prior divided out."""
    if len(prior) != len(scores):
        raise ValueError(f"a prior over {len(prior)} positions cannot calibrate {len(scores)} options")
    keyed = calibrate({str(i): v for i, v in enumerate(scores)}, {str(i): p for i, p in enumerate(prior)})
    return list(keyed.values())
