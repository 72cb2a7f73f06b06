"""The answer-bias dimensions of a search space: where they are offered, and how a
point that picks a calibration together with chain of thought is read."""

from __future__ import annotations

import dataclasses
import logging
from typing import TYPE_CHECKING, Any

from promptopt.types import Candidate

if TYPE_CHECKING:
    from promptopt.backends.base import Backend
    from promptopt.spaces import SearchSpace
    from promptopt.tasks import Task

logger = logging.getLogger(__name__)


def direct_answer(base: Candidate, changes: dict[str, Any]) -> dict[str, Any]:
    """A calibration reads label scores right after the prompt: a point that also picks
    chain of thought, several samples or a second stage keeps calibration ``none`` (a
    space's ``when`` conditions should prevent such points; see default.yaml). With
    permutation it averages the label scores over the orderings."""
    merged = {**dataclasses.asdict(base), **changes}
    direct = (
        merged["cot_mode"] == "none"
        and merged["samples"] == 1
        and not merged["two_stage"]
        and not merged["rescue"]
    )
    return changes if direct else {**changes, "calibration": "none"}


def calibration_problem(task: Task, calibration: str, backend: Backend | None = None) -> str | None:
    """Why ``calibration`` cannot be used on ``task`` (with ``backend``, when given), or
    None: it needs label log-probabilities and a small answer set, and ``position`` a
    multiple-choice task."""
    if backend is not None and not backend.can_score_labels():
        return f"backend {backend.model_id} gives no label log-probabilities"
    if task.labels is None:
        return f"task {task.name} has no small answer set"
    if calibration == "position" and task.extractor_name != "choice":
        return f"task {task.name} is not multiple choice"
    return None


def offer_bias_dimensions(
    space: SearchSpace, task: Task, backend: Backend | None, *, quiet: bool = False
) -> SearchSpace:
    """``space`` without the answer-bias choices this task and backend cannot use:
    calibration needs label log-probabilities (``backend.can_score_labels()``; without a
    backend, as the estimate is made, that is not checked) and a task with a small answer
    set, ``position`` a multiple-choice task; ``permute`` (as a list of choices) needs items
    that list options. A dimension left with one choice keeps it as its only value. Each
    dropped choice is logged, unless ``quiet``."""
    warn = (lambda *args: None) if quiet else logger.warning
    out = []
    for dim in space.dimensions:
        if dim.name == "calibration" and dim.kind == "categorical":
            problems = {c: calibration_problem(task, str(c), backend) for c in dim.choices if c != "none"}
            keep = tuple(c for c in dim.choices if c == "none" or problems[c] is None)
            if keep != dim.choices:
                dropped = [c for c in dim.choices if c not in keep]
                warn(
                    "calibration %s not offered: %s",
                    ", ".join(str(c) for c in dropped),
                    problems[dropped[0]],
                )
                dim = dataclasses.replace(dim, choices=keep or ("none",))
        permutes = dim.name == "permute" and dim.kind == "categorical" and any(c != 1 for c in dim.choices)
        if permutes and (problem := permute_problem(task)):  # every ordering would be the item as it is
            warn("permute %s not offered: %s", ", ".join(str(c) for c in dim.choices if c != 1), problem)
            dim = dataclasses.replace(dim, choices=(1,))
        out.append(dim)
    return dataclasses.replace(space, dimensions=tuple(out))


def permute_problem(task: Task) -> str | None:
    """Why permuting the options of ``task``'s items would change nothing, or None: no
    dev or test item has an options block to reorder."""
    from promptopt.bias.labels import split_items

    if any(task.options(e) for e in split_items(task)):
        return None
    return f"no item of task {task.name} lists its options"
