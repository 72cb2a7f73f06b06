"""reasoning-gym's tasks, scored by each dataset's own ``score_answer``.

The ``rg:<dataset>`` task family (``promptopt/tasks/builtin/rg.yaml``) generates ~100
procedural datasets offline with the ``reasoning-gym`` package (seeded, no download).
Each example's id names its split and index, so :func:`rg_score` regenerates the same
entry (with the metadata the dataset's scorer needs) and asks the dataset to score the
answer: partial credit is kept, as the dataset gives it.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

from promptopt.errors import MetricError
from promptopt.metrics.base import MetricFn, MetricResult, Prediction
from promptopt.types import Example

_TAG_RE = re.compile(r"<answer>(.*?)</answer>", re.DOTALL | re.IGNORECASE)
_OPEN_TAG_RE = re.compile(r"<answer>(.*)\Z", re.DOTALL | re.IGNORECASE)
_ANSWER_IS_RE = re.compile(r"(?:final answer|answer)\s*(?:is|:)\s*:?\s*(.+)", re.IGNORECASE)


def extract_answer_tag(text: str) -> str | None:
    """The answer as reasoning-gym asks for it: the last ``<answer>...</answer>``, else an
    unclosed ``<answer>`` tail, else the rest of the last "the answer is" line. Case and
    inner spacing are kept (the dataset's scorer decides what matters)."""
    tags = _TAG_RE.findall(text)
    if tags:
        return tags[-1].strip() or None
    tail = _OPEN_TAG_RE.search(text)
    if tail:
        return tail.group(1).strip() or None
    lines = [m.group(1).strip() for m in _ANSWER_IS_RE.finditer(text)]
    if lines:
        return lines[-1].rstrip(".").strip() or None
    return None


class ReasoningGymScorer:
    """``metric: rg_score``. Options (default: the task's ``source``): ``dataset``, ``seed``
    and ``sizes``, exactly as the ``reasoning_gym`` loader used them."""

    def __init__(self, options: Mapping[str, Any], task: Any) -> None:
        unknown = sorted(set(options) - {"dataset", "seed", "sizes", "split_seed_stride"})
        if unknown:
            raise MetricError(
                f"metric rg_score: unknown option(s) {', '.join(unknown)}; it takes dataset, seed, sizes"
            )
        source = dict(getattr(getattr(task, "spec", None), "source", None) or {})
        self.dataset = options.get("dataset", source.get("dataset"))
        self.seed = int(options.get("seed", source.get("seed", 0)))
        self.sizes = dict(options.get("sizes", source.get("sizes", {"train": 1000, "test": 300})))
        self.stride = int(options.get("split_seed_stride", source.get("split_seed_stride", 1)))
        self._generated: dict[str, Any] = {}

    def _split(self, split: str) -> Any:
        if split not in self._generated:
            if not self.dataset:
                raise MetricError(
                    "metric rg_score needs a reasoning-gym dataset (a task with source.type reasoning_gym)"
                )
            if split not in self.sizes:
                raise MetricError(f"metric rg_score: no split {split!r} in sizes {self.sizes}")
            try:
                import reasoning_gym
            except ImportError:
                from promptopt.errors import MissingDependencyError

                raise MissingDependencyError(
                    "metric rg_score needs the 'reasoning-gym' package", hint="pip install 'promptopt[data]'"
                ) from None
            offset = list(self.sizes).index(split)
            self._generated[split] = reasoning_gym.create_dataset(
                self.dataset, size=int(self.sizes[split]), seed=self.seed + offset * self.stride
            )
        return self._generated[split]

    def entry(self, example: Example) -> tuple[Any, dict[str, Any]]:
        split, _, index = example.id.rpartition("-")
        if not split or not index.isdigit():
            raise MetricError(
                f"metric rg_score: example id {example.id!r} is not a reasoning-gym item (split-NNNNN)"
            )
        dataset = self._split(split)
        return dataset, dataset[int(index)]

    def __call__(self, example: Example, prediction: Prediction) -> MetricResult:
        dataset, entry = self.entry(example)
        if str(entry["question"]) != example.inputs.get("question", entry["question"]):
            raise MetricError(
                f"metric rg_score: example {example.id} is not item {example.id} of {self.dataset}"
            )
        score = float(dataset.score_answer(prediction.answer, entry))
        score = min(1.0, max(0.0, score))
        if score == 1.0:
            return MetricResult(1.0, "")
        expected = entry.get("answer")
        if prediction.answer is None:
            reason = "no answer found (reasoning-gym expects <answer>...</answer>)"
        else:
            shown = " ".join(str(prediction.answer).split())[:60]
            reason = f"got {shown}" + (
                f", expected {' '.join(str(expected).split())[:60]}" if expected is not None else ""
            )
        prefix = f"partial credit {score:.2f}: " if score > 0 else ""
        return MetricResult(score, prefix + reason)


def rg_score(options: Mapping[str, Any], task: Any) -> MetricFn:
    return ReasoningGymScorer(options, task)
