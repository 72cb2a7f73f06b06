"""Evaluators: where candidate evaluations run. The serial one runs them in this process.

An evaluator scores (candidate, examples) through the executor, writes every result to
the store as soon as its batch is done, and remembers what it has scored in this
process so that a candidate raced again is not asked again. It deliberately does *not*
skip results already in the store: on resume the search replays its model calls from
the response cache, so budgets and decisions come out exactly as in an uninterrupted
run, and only work that was never cached costs a real call.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable, Sequence

from promptopt.executor import Executor
from promptopt.types import Candidate, EvalResult, Example

ResultSink = Callable[[Sequence[EvalResult]], None]


class Evaluator(ABC):
    """Scores candidates on examples; returns results in the order of ``examples``."""

    @abstractmethod
    def evaluate(self, candidate: Candidate, examples: Sequence[Example], split: str) -> list[EvalResult]: ...

    def known(self, candidate: Candidate, split: str) -> list[EvalResult]:
        """Results already computed in this process for ``candidate`` on ``split``."""
        return []

    def evaluate_many(
        self, jobs: Sequence[tuple[Candidate, Sequence[Example]]], split: str
    ) -> list[list[EvalResult]]:
        """Several candidates at once (one racing stage). Serial by default; a parallel
        evaluator overrides this. Results come back in the order of ``jobs``."""
        return [self.evaluate(candidate, examples, split) for candidate, examples in jobs]

    def close(self) -> None:  # noqa: B027 - optional hook
        """Release workers."""


class SerialEvaluator(Evaluator):
    """Runs evaluations one batch after another through ``executor``; ``sink`` receives
    each finished batch (the controller stores it)."""

    def __init__(self, executor: Executor, sink: ResultSink) -> None:
        self.executor = executor
        self.sink = sink
        # (candidate hash, split) -> example id -> result
        self._memo: dict[tuple[str, str], dict[str, EvalResult]] = {}

    def known(self, candidate: Candidate, split: str) -> list[EvalResult]:
        """Results already computed in this process for ``candidate`` on ``split``."""
        return list(self._memo.get((candidate.hash, split), {}).values())

    def evaluate(self, candidate: Candidate, examples: Sequence[Example], split: str) -> list[EvalResult]:
        return self.evaluate_many([(candidate, examples)], split)[0]

    def evaluate_many(
        self, jobs: Sequence[tuple[Candidate, Sequence[Example]]], split: str
    ) -> list[list[EvalResult]]:
        """All jobs' missing (candidate, example) pairs go through the executor together,
        so one racing stage fills the backend's batches across candidates."""
        missing: list[tuple[Candidate, Example]] = []
        seen: set[tuple[str, str]] = set()
        for candidate, examples in jobs:
            done = self._memo.setdefault((candidate.hash, split), {})
            for example in examples:
                key = (candidate.hash, example.id)
                if example.id not in done and key not in seen:
                    seen.add(key)
                    missing.append((candidate, example))

        def on_batch(batch: Sequence[EvalResult]) -> None:
            self.sink(batch)
            for result in batch:
                self._memo.setdefault((result.candidate_hash, split), {})[result.example_id] = result

        if missing:
            self.executor.evaluate_pairs(missing, split, on_batch=on_batch)
        return [[self._memo[(c.hash, split)][e.id] for e in examples] for c, examples in jobs]
