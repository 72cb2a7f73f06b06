"""What a person reads after a run: the items that lost the most points, with the
metric's reason, and the score per gold label of a classification task.

Pure functions over stored :class:`~promptopt.types.EvalResult` rows; ``promptopt show``
and the HTML report print them.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from promptopt.types import EvalResult

#: A task with at most this many distinct gold answers gets a per-label table.
MAX_LABELS = 12


def worst_items(results: Sequence[EvalResult], n: int = 5, split: str | None = None) -> list[EvalResult]:
    """Up to ``n`` results that lost points, lowest score first (failures, which have no
    score, before everything); ties keep the stored order. Test items come before dev
    items when both are present and no ``split`` is named."""
    pool = [r for r in results if (split is None or r.split == split) and (r.score is None or r.score < 1.0)]
    order = {"test": 0, "dev": 1}
    ranked = sorted(
        enumerate(pool),
        key=lambda pair: (
            order.get(pair[1].split, 2),
            -1.0 if pair[1].score is None else pair[1].score,
            pair[0],
        ),
    )
    return [r for _, r in ranked[:n]]


@dataclass(frozen=True)
class LabelScore:
    label: str
    n: int
    mean: float
    n_failed: int


def per_label(results: Sequence[EvalResult], split: str | None = None) -> list[LabelScore]:
    """Mean score per gold answer when there are few distinct ones (a label set), most
    frequent label first; empty otherwise."""
    chosen = [r for r in results if split is None or r.split == split]
    labels: dict[str, list[EvalResult]] = {}
    for result in chosen:
        labels.setdefault(result.gold, []).append(result)
    # a label set: few distinct gold answers, each seen about twice or more
    if not labels or len(labels) > MAX_LABELS or 2 * len(labels) > len(chosen):
        return []
    rows = []
    for label, items in labels.items():
        scored = [r.score for r in items if r.score is not None]
        rows.append(LabelScore(label, len(scored), sum(scored) / len(scored) if scored else 0.0,
                               len(items) - len(scored)))  # fmt: skip
    return sorted(rows, key=lambda row: (-row.n - row.n_failed, row.label))


def describe_item(result: EvalResult, width: int = 90) -> str:
    """One line: score, split, example id, answer vs gold, and the metric's reason."""
    score = "failed" if result.score is None else f"{result.score:.2f}"
    reason = result.feedback or result.error or ""
    text = f"{score:>6} {result.split:<5} {result.example_id}: answer {_clip(result.answer, 30)!s} · gold {_clip(result.gold, 30)}"
    if reason:
        text += f" · {_clip(reason, width)}"
    return text


def _clip(value: str | None, width: int) -> str | None:
    if value is None:
        return None
    flat = " ".join(value.split())
    return flat if len(flat) <= width else flat[: width - 1] + "…"
