"""The response cache: a wrapper that makes any backend answer a repeated request from
the store, without calling the model again."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol

from promptopt.backends.base import Backend, OnResults
from promptopt.types import Completion, GenerationRequest


class CacheStore(Protocol):
    def cache_get_many(self, keys: Sequence[str]) -> dict[str, Completion]: ...

    def cache_put_many(self, entries: Sequence[tuple[str, str, Completion]]) -> None: ...


class CachingBackend(Backend):
    """Answers from ``store`` when it holds the request (keyed by model, messages,
    sampling parameters and sample index), else from ``inner``; successful new answers
    are stored. Failures are never cached. ``hits`` and ``misses`` count requests.

    New answers are stored as the inner backend reports them final
    (:meth:`Backend.generate_each`), one write per report: a process killed in the
    middle of a long batch loses only the answers still being made, not the whole
    batch."""

    def __init__(self, inner: Backend, store: CacheStore) -> None:
        self.inner = inner
        self.store = store
        self.hits = 0
        self.misses = 0

    @property
    def model_id(self) -> str:
        return self.inner.model_id

    def describe(self) -> dict[str, object]:
        return {**self.inner.describe(), "cache": True}

    def generate(self, requests: Sequence[GenerationRequest]) -> list[Completion]:
        return self.generate_each(requests, None)

    def generate_each(
        self, requests: Sequence[GenerationRequest], on_results: OnResults | None
    ) -> list[Completion]:
        """Cache hits are reported at once, new answers as the inner backend reports them."""
        model = self.inner.model_id
        keys = [request.cache_key(model) for request in requests]
        found = self.store.cache_get_many(list(dict.fromkeys(keys)))
        missing = [i for i, key in enumerate(keys) if key not in found]
        if on_results is not None and len(missing) < len(requests):
            on_results([(i, found[key]) for i, key in enumerate(keys) if key in found])
        fresh: dict[int, Completion] = {}
        if missing:
            # Identical requests inside one batch are generated once.
            unique: dict[str, int] = {}
            same: dict[str, list[int]] = {}
            for index in missing:
                unique.setdefault(keys[index], index)
                same.setdefault(keys[index], []).append(index)
            order = list(unique.values())

            def report(finished: list[tuple[int, Completion]]) -> None:
                if on_results is not None:
                    on_results([(i, c) for j, c in finished for i in same[keys[order[j]]]])

            answers = self._generate_and_store(
                model, [requests[i] for i in order], [keys[i] for i in order], report
            )
            by_key = {keys[i]: answer for i, answer in zip(order, answers, strict=True)}
            fresh = {i: by_key[keys[i]] for i in missing}
        self.hits += len(requests) - len(missing)
        self.misses += len(missing)
        return [fresh[i] if i in fresh else found[keys[i]] for i in range(len(requests))]

    def _generate_and_store(
        self,
        model: str,
        requests: list[GenerationRequest],
        keys: list[str],
        report: OnResults | None = None,
    ) -> list[Completion]:
        def keep(finished: list[tuple[int, Completion]]) -> None:
            answers = [(keys[index], model, c) for index, c in finished if c.ok]
            if answers:
                self.store.cache_put_many(answers)
            if report is not None:
                report(finished)

        return self.inner.generate_each(requests, keep)

    def close(self) -> None:
        self.inner.close()
