"""The constant baseline: always give the one best answer.

On ``bbh:snarks`` a small model answered (A) 43 times in 50 and scored 48%, while always
answering (B) scored 62% on the same items. For a task whose answers form a small set,
every score is shown beside this baseline: the most common gold answer of the train
split (the demo pool; dev when train is empty), scored on the very items the prompt was
scored on.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping, Sequence
from typing import Any

from promptopt.errors import DataError
from promptopt.tasks import Task
from promptopt.types import Example


def best_constant(task: Task) -> tuple[str, str] | None:
    """(answer, split it was chosen on) for a task with a small answer set, else None."""
    if task.labels is None:
        return None
    for split in ("train", "dev"):
        try:
            examples = task.examples(split)
        except DataError:
            continue
        counts = Counter(task.target(e) for e in examples)
        if counts:
            return counts.most_common(1)[0][0], split
    return None


def constant_score(task: Task, answer: str, examples: Sequence[Example]) -> dict[str, Any]:
    """``{"accuracy", "n"}`` of always answering ``answer`` on ``examples``."""
    n = len(examples)
    correct = sum(task.score(answer, e) for e in examples)
    return {"accuracy": correct / n if n else 0.0, "n": n}


def constant_baseline(task: Task, **splits: Sequence[Example]) -> dict[str, Any] | None:
    """``{"answer", "chosen_on", <split>: {"accuracy", "n"}, ...}`` for each split given
    (``dev=…``, ``test=…``), or None when the task has no small answer set."""
    best = best_constant(task)
    if best is None:
        return None
    answer, chosen_on = best
    return {
        "answer": answer,
        "chosen_on": chosen_on,
        **{split: constant_score(task, answer, examples) for split, examples in splits.items()},
    }


def constant_line(
    constant: dict[str, Any] | None, accuracy: float | None, split: str, what: str
) -> str | None:
    """``always (B): 62.0% on the same 50 test items (chosen on train); the prompt does NOT beat it``."""
    if not constant or not isinstance(constant.get(split), dict):
        return None
    score = constant[split]
    if not score.get("n"):  # nothing scored (every request failed): no comparison to make
        return None
    line = (
        f"always {constant['answer']}: {score['accuracy']:.1%} on the same {score['n']} {split} items "
        f"(the most common answer of {constant['chosen_on']})"
    )
    if accuracy is not None and accuracy <= score["accuracy"]:
        line += f"; {what} does NOT beat it"
    return line


def constant_scores_text(constant: Mapping[str, Any]) -> str:
    """ "dev 55.0% (n=30), test 57.7% (n=71)": a stored constant baseline's scores, for the
    terminal and the report."""
    return ", ".join(
        f"{split} {constant[split]['accuracy']:.1%} (n={constant[split]['n']})"
        for split in ("dev", "test")
        if isinstance(constant.get(split), dict)
    )
