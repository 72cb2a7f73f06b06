"""The metric interface: ``metric(example, prediction) -> float | MetricResult``.

A metric is any callable that takes the task's :class:`~promptopt.types.Example` and a
:class:`Prediction` and returns a score in [0, 1] (partial credit allowed), or a
:class:`MetricResult` with the score and a short feedback text that says *why* the answer
lost points. :class:`Metric` wraps such a callable with what promptopt needs around it: a
name, the spec stored with runs, score validation, and the one error that stops a run
when the metric raises.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from promptopt.errors import MetricError, PromptOptError
from promptopt.types import Example


@dataclass(frozen=True)
class Prediction:
    """What the model produced for one example, as a metric sees it.

    ``raw`` is the model's whole output; ``answer`` the answer the task's extractor read
    from it (``None``: no answer found); ``parsed`` the parsed JSON value when the task's
    extractor is ``json`` (else ``None``); ``error`` says why extraction failed when it
    knows (a JSON parse or schema failure), and such a prediction scores 0 with that
    feedback without the metric being asked; ``finish_reason`` is the backend's
    (``length``: cut off at the token limit)."""

    raw: str
    answer: str | None
    parsed: Any = None
    error: str | None = None
    finish_reason: str = "stop"

    @property
    def json(self) -> Any:
        """The parsed JSON value (alias of ``parsed``)."""
        return self.parsed


@dataclass(frozen=True)
class MetricResult:
    """A score in [0, 1] with the reason it is not 1 (or why it is). ``failed`` marks a
    scoring that could not be done (an unparseable judge reply): the evaluation is stored
    as a failure, with ``feedback`` holding what went wrong, and is excluded from scores."""

    score: float | None
    feedback: str = ""
    failed: bool = False


MetricFn = Callable[[Example, Prediction], "float | MetricResult"]


def check_score(value: Any, metric: str, example_id: str) -> MetricResult:
    """``value`` as a :class:`MetricResult`; anything but a number in [0, 1] (a bool counts
    as 0 or 1) raises :class:`MetricError` naming the metric and the example."""
    if isinstance(value, MetricResult):
        if value.failed:
            return value
        result = value
    else:
        result = MetricResult(value)
    score = result.score
    if isinstance(score, bool):
        score = float(score)
    if not isinstance(score, (int, float)) or isinstance(score, complex):
        raise MetricError(
            f"metric {metric} returned {type(score).__name__} {score!r:.60} for example {example_id}; "
            "a metric returns a number in [0, 1] or MetricResult(score, feedback)"
        )
    score = float(score)
    if math.isnan(score) or not 0.0 <= score <= 1.0:
        raise MetricError(
            f"metric {metric} returned {score!r} for example {example_id}; a score must be in [0, 1]"
        )
    if not isinstance(result.feedback, str):
        raise MetricError(
            f"metric {metric} returned feedback of type {type(result.feedback).__name__} for example "
            f"{example_id}; feedback is text"
        )
    return MetricResult(score, result.feedback)


class Metric:
    """A scoring function with its identity.

    ``spec`` is what a run stores (JSON): a built-in name, ``{name: options}``, a
    ``module:function`` / ``path.py:function`` reference, or ``{"callable": qualname,
    "resumable": false}`` for a Python callable that cannot be imported again.
    ``user_code`` is true when scoring runs the user's code (a reference or a callable):
    such a metric is never imported from a stored run unless the user names it again.
    """

    def __init__(
        self,
        name: str,
        fn: MetricFn,
        spec: Any,
        *,
        user_code: bool = False,
        resumable: bool = True,
        why_not_resumable: str = "",
        description: str = "",
    ) -> None:
        self.name = name
        self.fn = fn
        self.spec = spec
        self.user_code = user_code
        self.resumable = resumable
        self.why_not_resumable = why_not_resumable
        self.description = description

    def __repr__(self) -> str:
        return f"Metric({self.name!r})"

    def prepare(self, context: MetricContext) -> None:
        """Hook called once a run knows its store (the LLM judge builds its backend here)."""
        prepare = getattr(self.fn, "prepare", None)
        if callable(prepare):
            prepare(context)

    def describe(self) -> dict[str, Any]:
        """Accounting of the metric's own model calls (the judge's); empty otherwise."""
        describe = getattr(self.fn, "describe", None)
        return dict(describe()) if callable(describe) else {}

    def close(self) -> None:
        close = getattr(self.fn, "close", None)
        if callable(close):
            close()

    def score(self, example: Example, prediction: Prediction) -> MetricResult:
        return self.score_many([(example, prediction)])[0]

    def score_many(self, items: Sequence[tuple[Example, Prediction]]) -> list[MetricResult]:
        """Score every (example, prediction); a prediction whose extraction failed with a
        reason scores 0 with that reason. A metric that raises stops the run with a
        :class:`MetricError` naming the example and the exception."""
        results: list[MetricResult | None] = [None] * len(items)
        asked: list[int] = []
        for index, (_, prediction) in enumerate(items):
            if prediction.error is not None:
                results[index] = MetricResult(0.0, prediction.error)
            else:
                asked.append(index)
        batch = getattr(self.fn, "score_many", None)
        if callable(batch) and asked:
            try:
                values = list(batch([items[i] for i in asked]))
            except PromptOptError:  # a metric error, a spent judge budget: already clear
                raise
            except Exception as exc:
                raise self._raised(items[asked[0]][0], exc) from exc
            for index, value in zip(asked, values, strict=True):
                results[index] = check_score(value, self.name, items[index][0].id)
        else:
            for index in asked:
                example, prediction = items[index]
                try:
                    value = self.fn(example, prediction)
                except PromptOptError:
                    raise
                except Exception as exc:
                    raise self._raised(example, exc) from exc
                results[index] = check_score(value, self.name, example.id)
        return [r for r in results if r is not None]

    def _raised(self, example: Example, exc: BaseException) -> MetricError:
        text = str(exc).strip().splitlines()
        detail = f"{type(exc).__name__}: {text[0]}" if text else type(exc).__name__
        if isinstance(self.spec, Mapping) and self.spec.get("resumable") is False:
            hint = ("fix the metric and start a new run (a lambda or closure cannot be named again to resume "
                    "it; a module-level function can); the model's answers come back from the response cache")  # fmt: skip
        else:
            hint = ("fix the metric, then resume the search (or rerun the eval): the model's answers so far "
                    "come back from the response cache")  # fmt: skip
        return MetricError(f"metric {self.name} raised on example {example.id}: {detail}", hint=hint)


@dataclass
class MetricContext:
    """What a run lends its metric: the store (for the response cache) and the budget
    wrappers' settings. ``judge_budget`` limits the judge's calls apart from the task's."""

    store: Any = None
    max_judge_calls: int | None = None
    batch_size: int = 16
    extra: Mapping[str, Any] | None = None
