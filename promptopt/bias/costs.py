"""What the answer-bias strategies cost in backend calls, for estimates and progress."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from promptopt.types import Candidate, Example


def calls_per_example(
    samples: int = 1,
    two_stage: bool = False,
    permute: int = 1,
    calibration: str = "none",
    rescue: bool = False,
) -> int:
    """An upper bound of the calls one example costs: ``samples`` (twice with a second
    stage, or with ``rescue``, which asks it of the outputs without an answer), times the
    orderings with ``permute`` (plus one label-scoring call per ordering, for a tied
    vote); one scoring call with a calibration, per ordering with ``permute``."""
    if calibration != "none":
        return max(1, permute)
    per_ordering = samples * (2 if two_stage or rescue else 1)
    if permute > 1:
        return permute * per_ordering + permute
    return per_ordering


def candidate_calls(candidate: Candidate) -> int:
    """:func:`calls_per_example` of a candidate."""
    return calls_per_example(
        candidate.samples, candidate.two_stage, candidate.permute, candidate.calibration, candidate.rescue
    )


def steady_calls(candidate: Candidate, examples: Sequence[Example]) -> int:
    """The calls ``examples`` make under ``candidate`` whatever the answers (a progress
    display's total): each item's orderings (every cyclic shift when ``permute`` is at
    least its options; one for an item whose options cannot be found) times its samples
    (two calls each with a second stage), or one scoring call per ordering with a
    calibration; a tie-break, a rescue or a calibration's prior only some make."""
    from promptopt.bias.permute import find_options

    per = 1 if candidate.calibration != "none" else candidate.samples * (2 if candidate.two_stage else 1)
    if candidate.permute <= 1:
        return per * len(examples)
    total = 0
    for example in examples:
        block = find_options(example)[0]
        total += per * (min(candidate.permute, len(block.lines)) if block is not None else 1)
    return total


def calibration_overhead(calibration: str, option_counts: Sequence[int] = (5,)) -> int:
    """Calls a calibration makes once per candidate, beside the items: the content-free
    inputs (contextual) or the permuted dev items (position: every shift of
    :data:`POSITION_ITEMS` items for each option count among the task's items)."""
    from promptopt.bias.labels import CONTENT_FREE, POSITION_ITEMS

    if calibration == "contextual":
        return len(CONTENT_FREE)
    if calibration == "position":
        return POSITION_ITEMS * sum(option_counts)
    return 0


def option_counts(task: Any) -> tuple[int, ...]:
    """The distinct numbers of options the task's dev and test items list (for the
    position calibration's overhead); ``(5,)`` when none can be read."""
    from promptopt.bias.labels import split_items

    counts = {n for e in split_items(task) if (n := len(task.options(e)))}
    return tuple(sorted(counts)) or (5,)


def space_calls_per_example(space: Any, base: Candidate) -> int:
    """The most calls one example can cost in ``space`` (a :class:`SearchSpace`): its
    largest sampling, second stage and permutation (a calibration costs one call per
    ordering, which the permutation's bound covers)."""

    def most(name: str, default: Any) -> Any:
        if name not in space:
            return default
        values = space[name].options()
        return max([default, *values]) if not isinstance(default, bool) else (default or True in values)

    return calls_per_example(
        int(most("samples", base.samples)),
        bool(most("two_stage", base.two_stage)),
        int(most("permute", base.permute)),
        rescue=bool(most("rescue", base.rescue)),
    )


def space_calibration_overhead(space: Any, base: Candidate, task: Any = None) -> int:
    """The largest once-per-candidate calibration overhead ``space`` allows (``task``
    gives the option counts of ``position``; without it, 5 options are assumed)."""
    kinds = {base.calibration, *(space["calibration"].options() if "calibration" in space else ())}
    counts = option_counts(task) if task is not None and "position" in kinds else (5,)
    return max(calibration_overhead(kind, counts) for kind in kinds)
