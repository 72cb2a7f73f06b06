"""A deterministic, scriptable backend that ships in the package, for tests and dry runs.

No network, no randomness beyond a seed, no sleeping unless asked. Replies come from,
in order: texts queued with :meth:`FakeBackend.enqueue`, then rules added with
:meth:`FakeBackend.when` (a reply for requests that contain a text), then the
``responder`` callable, then a default reply derived from a hash of the request (so the
same request always gets the same answer, and different prompts get different answers).

The default reply knows two formats: a request from the LLM judge
(:mod:`promptopt.metrics.judge`) gets a JSON verdict on the judge's scale, any other a
sentence ending in "The answer is N". Scripted JSON and judge replies:
``backend.when("Extract the fields", '{"name": "Ada"}')``,
``backend.when("You are grading", judge_reply(4, "clear but long"))``.

A label-scoring request (``score_labels`` set) is answered by ``scorer(request)`` (label
-> log-probability), or by log-probabilities derived from a hash of the request.
"""

from __future__ import annotations

import hashlib
import json
import re
import threading
import time
from collections import deque
from collections.abc import Callable, Sequence
from typing import Any, Union

from promptopt.backends.base import OnResults, StreamingBackend
from promptopt.types import Completion, GenerationRequest

Responder = Callable[[GenerationRequest], "str | Completion"]
LabelScorer = Callable[[GenerationRequest], "dict[str, float]"]
Reply = Union[str, Completion, Callable[[GenerationRequest], "str | Completion"]]  # noqa: UP007 - a runtime alias
_JUDGE_SCALE_RE = re.compile(r"scale from (-?\d+) \(worst\) to (-?\d+) \(best\)")


def judge_reply(score: float, reason: str = "") -> str:
    """A judge's reply in the format :mod:`promptopt.metrics.judge` reads."""
    return json.dumps({"score": score, "reason": reason})


def count_tokens(text: str) -> int:
    """A stand-in tokenizer: white-space separated words (good enough for accounting tests)."""
    return len(text.split())


class FakeBackend(StreamingBackend):
    """Scripted model. ``history`` keeps every request it answered, in order."""

    def __init__(
        self,
        responder: Responder | None = None,
        *,
        model: str = "fake",
        latency_s: float = 0.0,
        seed: int = 0,
        scorer: LabelScorer | None = None,
    ) -> None:
        self._responder = responder
        self._scorer = scorer
        self._model = model
        self._latency_s = latency_s
        self._seed = seed
        self._queue: deque[str | Completion] = deque()
        self._rules: list[tuple[str, deque[Any]]] = []
        self._lock = threading.Lock()
        self.history: list[GenerationRequest] = []

    @property
    def model_id(self) -> str:
        return self._model

    def can_score_labels(self) -> bool:
        return True

    def default_scores(self, request: GenerationRequest) -> dict[str, float]:
        """Deterministic log-probabilities in (-5, 0] for each label, from a hash."""
        key = request.cache_key(self._model)
        return {
            label: -(hashlib.sha256(f"{self._seed}|{key}|{label}".encode()).digest()[0] % 50) / 10
            for label in request.score_labels
        }

    def enqueue(self, *replies: str | Completion) -> None:
        """Queue replies that the next requests receive, first in first out."""
        with self._lock:
            self._queue.extend(replies)

    def when(self, needle: str, *replies: Reply) -> FakeBackend:
        """Answer requests whose messages contain ``needle`` with ``replies`` in turn (the
        last one repeats); a reply may be a callable of the request. Rules added first win."""
        if not replies:
            raise ValueError("when() needs at least one reply")
        with self._lock:
            self._rules.append((needle, deque(replies)))
        return self

    def _rule_reply(self, request: GenerationRequest) -> Any:
        text = "\n".join(m.content for m in request.messages)
        for needle, replies in self._rules:
            if needle in text:
                reply = replies.popleft() if len(replies) > 1 else replies[0]
                return reply(request) if callable(reply) else reply
        return None

    def default_reply(self, request: GenerationRequest) -> str:
        digest = hashlib.sha256(f"{self._seed}|{request.cache_key(self._model)}".encode()).digest()
        scale = _JUDGE_SCALE_RE.search(request.messages[0].content) if request.messages else None
        if scale is not None:  # the LLM judge: a verdict on its scale
            low, high = int(scale.group(1)), int(scale.group(2))
            return judge_reply(low + digest[0] % (high - low + 1), "fake judge verdict")
        return f"Let me see. The answer is {digest[0] % 10}."

    def _generate_each(
        self, requests: Sequence[GenerationRequest], on_results: OnResults | None
    ) -> list[Completion]:
        """With a ``latency_s``, reports each request as it is answered; without, the
        whole batch at once (it takes no time)."""
        completions: list[Completion] = []
        for request in requests:
            completions.append(self._answer(request))
            if on_results is not None and self._latency_s:
                on_results([(len(completions) - 1, completions[-1])])
        if on_results is not None and not self._latency_s and completions:
            on_results(list(enumerate(completions)))
        return completions

    def _answer(self, request: GenerationRequest) -> Completion:
        if request.score_labels:
            from promptopt.backends.scoring import scores_completion

            with self._lock:
                self.history.append(request)
            scores = (self._scorer or self.default_scores)(request)
            prompt_tokens = sum(count_tokens(m.content) for m in request.messages)
            return scores_completion(scores, tokens_in=prompt_tokens, latency_s=self._latency_s)
        with self._lock:
            self.history.append(request)
            queued = self._queue.popleft() if self._queue else None
            if queued is None and self._rules:
                queued = self._rule_reply(request)
        if self._latency_s:
            time.sleep(self._latency_s)
        reply: str | Completion
        if queued is not None:
            reply = queued
        elif self._responder is not None:
            reply = self._responder(request)
        else:
            reply = self.default_reply(request)
        if isinstance(reply, Completion):
            return reply
        prompt_tokens = sum(count_tokens(m.content) for m in request.messages)
        words = reply.split()
        finish = "stop"
        if len(words) > request.max_tokens:
            reply, finish = " ".join(words[: request.max_tokens]), "length"
        return Completion(
            text=reply,
            tokens_in=prompt_tokens,
            tokens_out=count_tokens(reply),
            finish_reason=finish,
            latency_s=self._latency_s,
        )
