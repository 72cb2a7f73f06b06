"""The backend interface: batch-first text generation for chat models."""

from __future__ import annotations

import itertools
from abc import ABC, abstractmethod
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

from promptopt.types import Completion, GenerationRequest

if TYPE_CHECKING:
    from promptopt.backends.json_grammar import JsonMode

DTYPES = ("auto", "int8", "float32", "bfloat16")  # a local model's weights (--dtype)

OnResults = Callable[[list[tuple[int, Completion]]], None]
"""Called with ``(position of the request, its completion)`` pairs, each once final."""


class Backend(ABC):
    """A chat model that answers a batch of requests.

    Contract:

    - ``generate(requests)`` returns exactly one :class:`Completion` per request, in
      order. A request that fails returns a ``Completion`` with ``error`` set (and
      ``retryable`` when trying again may help); it does not fail the batch.
    - Configuration problems that no retry can fix (unknown model, missing package)
      raise :class:`promptopt.errors.BackendError` or ``ModelError`` instead.
    - ``model_id`` names the model in cache keys and in the store: two backends with
      the same ``model_id`` must give the same output for the same greedy request.
    - Backends hold no secrets in their ``describe()`` output; it is stored with runs.

    Caching and retries are wrappers (:mod:`promptopt.backends.cache`,
    :mod:`promptopt.backends.retry`), never code inside a backend.
    """

    @property
    @abstractmethod
    def model_id(self) -> str:
        """Stable model name, e.g. ``local/qwen2.5-coder-1.5b`` or ``openai/gpt-4o-mini``."""

    @abstractmethod
    def generate(self, requests: Sequence[GenerationRequest]) -> list[Completion]:
        """Answer every request; see the class docstring for the contract."""

    def generate_each(
        self, requests: Sequence[GenerationRequest], on_results: OnResults | None
    ) -> list[Completion]:
        """``generate(requests)``, also calling ``on_results`` with ``(index,
        completion)`` pairs as completions become final: every request exactly once,
        from the caller's thread, in as many calls as the backend finishes groups.

        The default reports them all in one call after ``generate`` returns. Backends
        that finish requests over time report each group as it finishes (the local
        model: the rows a decoding step ended; the Ray pool: a worker's chunk; the
        OpenAI backend: the requests answered since the last report), so that a wrapper
        (the response cache) keeps them even if the process is killed before the whole
        batch is done (see :class:`StreamingBackend`)."""
        results = self.generate(requests)
        if on_results is not None and results:
            on_results(list(enumerate(results)))
        return results

    def describe(self) -> dict[str, object]:
        """Facts worth storing with a run (no secrets)."""
        return {"model": self.model_id, "backend": type(self).__name__}

    def can_score_labels(self) -> bool:
        """Whether this backend answers label-scoring requests (``score_labels`` set:
        log-probabilities instead of text; :mod:`promptopt.backends.scoring`). A wrapper
        answers as the backend it wraps (``inner``); engines that can say True."""
        inner = getattr(self, "inner", None)
        return isinstance(inner, Backend) and inner.can_score_labels()

    def remaining_calls(self) -> int | None:
        """Requests this backend will still accept before refusing (a call budget), or
        ``None`` for no such limit; the executor sizes its calls by it."""
        return None

    def close(self) -> None:  # noqa: B027 - an optional hook, a no-op by default
        """Release resources (connections, model weights). Idempotent."""

    def __enter__(self) -> Backend:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class StreamingBackend(Backend):
    """A backend that finishes requests over time and reports each group as it goes.
    It implements ``_generate_each``; ``generate`` and ``generate_each`` both call it. A
    subclass, or an instance, with a ``generate`` of its own keeps the default
    ``generate_each`` (which calls that ``generate``), so that its override still sees
    every request."""

    def generate(self, requests: Sequence[GenerationRequest]) -> list[Completion]:
        return self._generate_each(requests, None)

    def generate_each(
        self, requests: Sequence[GenerationRequest], on_results: OnResults | None
    ) -> list[Completion]:
        if getattr(self.generate, "__func__", None) is not StreamingBackend.generate:
            return super().generate_each(requests, on_results)
        return self._generate_each(requests, on_results)

    @abstractmethod
    def _generate_each(
        self, requests: Sequence[GenerationRequest], on_results: OnResults | None
    ) -> list[Completion]:
        """Answer every request, passing each group of final answers to ``on_results``
        (when given) as the group finishes."""


def request_problem(request: GenerationRequest) -> str | None:
    """Why a local engine cannot generate ``request`` (stored as that request's error), or
    None when it can."""
    if not request.messages:
        return "request has no messages"
    if request.max_tokens < 1:
        return f"max_tokens must be at least 1, got {request.max_tokens}"
    if request.temperature < 0:
        return f"temperature must be >= 0, got {request.temperature}"
    return None


def admit_request(
    request: GenerationRequest,
    tokens: Callable[[GenerationRequest], list[int]],
    context: int | None,
    context_name: str,  # as the error names it, with {} for the number of tokens
    json_mode: JsonMode,
    loaded: Any,
) -> tuple[list[int], Any, str | None]:
    """A local engine's checks of ``request`` before it joins a batch, so that a bad request
    fails alone and not the batch midway: :func:`request_problem`, its prompt's ``tokens``
    (the chat template applied), ``context`` (0 or None: no limit; ``context_name`` names it in the
    error) and, for json_mode, its grammar matcher. Returns ``(prompt tokens, matcher
    or None, None)``, or an error as the last item."""
    error = request_problem(request)
    prompt: list[int] = []
    if error is None:
        try:
            prompt = tokens(request)
        except Exception as exc:  # a template may raise anything (jinja2, TypeError, ValueError, ...)
            error = f"cannot apply the chat template: {type(exc).__name__}: {exc}"
    if error is None and context and len(prompt) + request.max_tokens > context:
        error = (
            f"prompt of {len(prompt)} tokens + max_tokens {request.max_tokens} exceeds the "
            f"{context_name.format(context)}"
        )
    matcher = None
    if error is None:
        matcher, error = json_mode.admit(loaded, request)
    return prompt, matcher, error


def common_prefix(a: Sequence[int], b: Sequence[int]) -> int:
    """How many tokens two prompts share from the start (a local engine reuses their cache)."""
    n = min(len(a), len(b))
    i = 0
    while i < n and a[i] == b[i]:
        i += 1
    return i


def shared_prefixes(prompts: Sequence[Sequence[int]], min_tokens: int) -> list[list[int]]:
    """The prefixes of at least ``min_tokens`` tokens that two or more of ``prompts`` share
    (each the longest that its group has in common), e.g. a few-shot prompt's instruction
    and demos before each question. Prompts sorted, neighbours compared: a group is a run
    of neighbours sharing ``min_tokens`` or more."""
    ordered = sorted(tuple(p) for p in prompts)
    groups: list[list[int]] = []
    run: int | None = None  # tokens the current run shares so far
    for a, b in itertools.pairwise(ordered):
        shared = common_prefix(a, b)
        if shared >= min_tokens:
            run = shared if run is None else min(run, shared)
            continue
        if run is not None:
            groups.append(list(a[:run]))
        run = None
    if run is not None:
        groups.append(list(ordered[-1][:run]))
    return groups


def find_stop(text: str, stops: tuple[str, ...], previous_len: int) -> int | None:
    """Where the first stop string starts in ``text``, looking only where one could have
    appeared since the text was ``previous_len`` long (decoding adds text step by step)."""
    longest = max(len(s) for s in stops)
    start = max(0, previous_len - longest)
    found = [pos for s in stops if s and (pos := text.find(s, start)) >= 0]
    return min(found) if found else None
