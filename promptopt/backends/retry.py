"""Bounded retries with exponential backoff, as a wrapper around any backend."""

from __future__ import annotations

import functools
import random
import time
from collections.abc import Callable, Sequence

from promptopt.backends.base import Backend, OnResults, StreamingBackend
from promptopt.types import Completion, GenerationRequest


class RetryingBackend(StreamingBackend):
    """Re-sends the requests whose completion failed with ``retryable`` set, at most
    ``max_attempts`` times in all, waiting ``base_delay * 2**attempt`` (with jitter,
    capped at ``max_delay``) or the server's ``retry_after`` when it gave one. What
    still fails after the last attempt is returned as a failure, never dropped or
    replaced by another model's answer. ``sent`` counts every request passed to
    ``inner`` (the calls actually made), ``retries`` the re-sent ones."""

    def __init__(
        self,
        inner: Backend,
        *,
        max_attempts: int = 4,
        base_delay: float = 0.5,
        max_delay: float = 60.0,
        sleep: Callable[[float], None] = time.sleep,
        seed: int = 0,
    ) -> None:
        if max_attempts < 1:
            raise ValueError("max_attempts must be at least 1")
        self.inner = inner
        self.max_attempts = max_attempts
        self.base_delay = base_delay
        self.max_delay = max_delay
        self._sleep = sleep
        self._jitter = random.Random(seed)
        self.retries = 0
        self.sent = 0
        self.faults_seen = 0

    @property
    def model_id(self) -> str:
        return self.inner.model_id

    def describe(self) -> dict[str, object]:
        return {**self.inner.describe(), "max_attempts": self.max_attempts}

    def delay_for(self, attempt: int, failures: Sequence[Completion]) -> float:
        requested = [c.retry_after for c in failures if c.retry_after is not None]
        if requested:
            return min(self.max_delay, max(requested))
        backoff = self.base_delay * (2**attempt)
        return min(self.max_delay, backoff * (0.5 + self._jitter.random()))

    def _generate_each(
        self, requests: Sequence[GenerationRequest], on_results: OnResults | None
    ) -> list[Completion]:
        # A success is final at once (it is never re-sent) and is reported as it arrives;
        # a failure only once its retries are over.
        def successes(finished: list[tuple[int, Completion]], positions: Sequence[int] | None = None) -> None:
            ok = [(i if positions is None else positions[i], c) for i, c in finished if c.ok]
            if on_results is not None and ok:
                on_results(ok)

        self.sent += len(requests)
        results = list(self.inner.generate_each(requests, successes))
        self.faults_seen += sum(1 for c in results if not c.ok)
        for attempt in range(self.max_attempts - 1):
            pending = [i for i, c in enumerate(results) if not c.ok and c.retryable]
            if not pending:
                break
            self._sleep(self.delay_for(attempt, [results[i] for i in pending]))
            self.retries += len(pending)
            self.sent += len(pending)
            again = self.inner.generate_each(
                [requests[i] for i in pending], functools.partial(successes, positions=pending)
            )
            self.faults_seen += sum(1 for c in again if not c.ok)
            for index, completion in zip(pending, again, strict=True):
                results[index] = completion
        failures = [(i, c) for i, c in enumerate(results) if not c.ok]
        if on_results is not None and failures:
            on_results(failures)
        return results

    def close(self) -> None:
        self.inner.close()
