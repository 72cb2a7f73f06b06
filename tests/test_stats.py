"""The paired bootstrap's fast draws: the same indices as ``random.randrange``, drawn one
by one, and the generator left where it would be (the permutation test draws on)."""

from __future__ import annotations

import random

import pytest

from promptopt.stats import _draw_indices, balanced_accuracy, paired_difference


@pytest.mark.parametrize("n", [1, 2, 3, 100, 128, 200, 255, 256, 300, 5000, 65535, 65536, 70000, 2**31 + 5])
@pytest.mark.parametrize("count", [0, 1, 7, 3000])
def test_fast_draws_are_randranges_draws(n: int, count: int) -> None:
    for seed in (0, 11):
        one_by_one, fast = random.Random(seed), random.Random(seed)
        assert _draw_indices(fast, n, count) == [one_by_one.randrange(n) for _ in range(count)]
        assert fast.getstate() == one_by_one.getstate()


def _paired_one_by_one(
    a: list[float], b: list[float], resamples: int, seed: int
) -> tuple[float, float, float]:
    """The bootstrap and permutation test as written before the fast draws."""
    n = len(a)
    diffs = [y - x for x, y in zip(a, b, strict=True)]
    rng = random.Random(seed)
    boot = sorted(sum(diffs[rng.randrange(n)] for _ in range(n)) / n for _ in range(resamples))
    observed = abs(sum(diffs) / n)
    extreme = sum(
        1
        for _ in range(resamples)
        if abs(sum(d if rng.random() < 0.5 else -d for d in diffs) / n) >= observed - 1e-12
    )
    return (
        boot[int(0.025 * resamples)],
        boot[min(resamples - 1, int(0.975 * resamples))],
        (extreme + 1) / (resamples + 1),
    )


@pytest.mark.parametrize("n", [5, 100, 300])
def test_paired_difference_of_partial_credit_is_unchanged(n: int) -> None:
    rng = random.Random(n)
    a, b = [rng.random() for _ in range(n)], [rng.random() for _ in range(n)]
    result = paired_difference(a, b, resamples=300, seed=3)
    assert (result["ci_low"], result["ci_high"], result["p_value"]) == _paired_one_by_one(a, b, 300, 3)


def test_balanced_accuracy_is_the_mean_of_each_gold_labels_accuracy() -> None:
    # always "no" on a split of 3 no and 1 yes: accuracy 3/4, balanced (1 + 0) / 2
    assert balanced_accuracy([("no", 1.0), ("no", 1.0), ("no", 1.0), ("yes", 0.0)]) == 0.5
    # (A) 2 of 2 right, (B) 1 of 3, (C) 0 of 1: (1 + 1/3 + 0) / 3
    pairs = [("(A)", 1.0), ("(A)", 1.0), ("(B)", 1.0), ("(B)", 0.0), ("(B)", 0.0), ("(C)", 0.0)]
    assert balanced_accuracy(pairs) == pytest.approx(4 / 9)
    assert balanced_accuracy([("x", 0.5), ("y", 1.0)]) == 0.75  # partial credit averages as scores
    assert balanced_accuracy([]) == 0.0
