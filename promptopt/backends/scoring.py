"""Label scoring: the log-probability of given answer texts after a prompt.

A scoring request is an ordinary :class:`~promptopt.types.GenerationRequest` with
``score_labels`` set (the texts to score, e.g. ``"So the answer is (A)"``). Its
completion carries the log-probabilities as a JSON object in ``text``. Being an ordinary
request, it passes unchanged through every wrapper: the response cache keys it (the
labels are part of the key), the budget charges it as one call, retries re-send it.

Only the innermost engines answer one: the transformers engine, an OpenAI-compatible
server that returns ``logprobs``, and the fake backend. A backend says so with
:meth:`Backend.can_score_labels`; the executor asks before it sends one.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping, Sequence

from promptopt.backends.base import OnResults
from promptopt.errors import BackendError
from promptopt.types import Completion, GenerationRequest

Scorer = Callable[[Sequence[GenerationRequest]], list[Completion]]
Generator = Callable[[Sequence[GenerationRequest], OnResults | None], list[Completion]]


class LabelScoringError(BackendError):
    """A backend that cannot give log-probabilities was asked for them."""


def scores_completion(
    scores: Mapping[str, float], *, tokens_in: int = 0, latency_s: float = 0.0
) -> Completion:
    """The completion of a scoring request: ``scores`` (label text -> log-probability) as JSON."""
    return Completion(
        text=json.dumps({k: float(v) for k, v in scores.items()}, sort_keys=True),
        tokens_in=tokens_in,
        tokens_out=0,
        finish_reason="scored",
        latency_s=latency_s,
    )


def read_scores(completion: Completion) -> dict[str, float]:
    """The label log-probabilities a scoring completion carries."""
    data = json.loads(completion.text)
    if not isinstance(data, dict):
        raise ValueError("a scoring completion holds a JSON object of label -> log-probability")
    return {str(k): float(v) for k, v in data.items()}


def split_scoring(
    requests: Sequence[GenerationRequest],
    on_results: OnResults | None,
    generate_each: Generator,
    score: Scorer,
    *,
    route: Callable[[GenerationRequest], bool] = lambda r: bool(r.score_labels),
) -> list[Completion]:
    """Answer the scoring requests (those ``route`` picks) with ``score`` and the others
    with ``generate_each``, results in the order of ``requests`` (for engines that do both)."""
    scoring = [i for i, r in enumerate(requests) if route(r)]
    plain = [i for i, r in enumerate(requests) if not route(r)]
    results: list[Completion | None] = [None] * len(requests)
    if scoring:
        scored = score([requests[i] for i in scoring])
        for i, completion in zip(scoring, scored, strict=True):
            results[i] = completion
        if on_results is not None:
            on_results([(i, results[i]) for i in scoring])  # type: ignore[misc]
    if plain:

        def report(finished: list[tuple[int, Completion]]) -> None:
            if on_results is not None:
                on_results([(plain[j], c) for j, c in finished])

        generated = generate_each([requests[i] for i in plain], report if on_results is not None else None)
        for i, completion in zip(plain, generated, strict=True):
            results[i] = completion
    return [r if r is not None else Completion(text="", error="not answered") for r in results]
