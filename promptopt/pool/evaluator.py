"""The Ray evaluator: the candidates of a racing stage evaluated concurrently.

Each candidate of ``evaluate_many`` runs the ordinary :class:`Executor` in its own driver
thread; its model calls go to the Ray actors of a :class:`RayBackend`, so while one
candidate waits for the model the others render, read the cache, score and store. The
threads take turns through the pool's :class:`DriverLock` and release it only while
waiting for actors: the response cache, the retry and budget wrappers, the memo and the
store are used by one thread at a time, exactly as in a serial run, and none of them
needs a lock of its own.

Results are written by the driver through ``sink`` (the controller's store writer,
idempotent on (run, candidate, split, example)) and remembered, so a candidate raced
again is not asked again. With a deterministic backend the stored rows are the serial
evaluator's rows, whatever the order in which candidates finish or a worker dies.
"""

from __future__ import annotations

import threading
from collections.abc import Mapping, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any

from promptopt.backends.base import Backend
from promptopt.errors import ConfigError, PromptOptError
from promptopt.evaluator import Evaluator, ResultSink, SerialEvaluator
from promptopt.executor import Executor
from promptopt.pool.backend import RayBackend
from promptopt.types import Candidate, EvalResult, Example

Job = tuple[Candidate, Sequence[Example]]


class _Cancelled(PromptOptError):
    """Raised in a candidate thread after the stage was interrupted."""


class RayEvaluator(Evaluator):
    """Scores the candidates of a stage concurrently, the model calls on Ray actors.

    The executor's backend chain must end in a :class:`RayBackend` (what
    :func:`promptopt.pool.pool_backend` builds); when it ends in any other backend, that
    backend is shipped to ``workers`` actors (it must be picklable, like ``FakeBackend``)
    and spliced in. ``parallel_candidates`` bounds the candidates in flight at once;
    each has at most one executor batch out, so the budget may be overshot by that many
    batches (one in a serial run). :meth:`close` shuts the pool's actors down.
    """

    def __init__(
        self,
        executor: Executor,
        sink: ResultSink,
        *,
        workers: int = 2,
        ray_address: str | None = None,
        parallel_candidates: int = 16,
        num_cpus: int | None = None,
        resources: Mapping[str, float] | None = None,
    ) -> None:
        if parallel_candidates < 1:
            raise ConfigError(f"parallel_candidates must be at least 1, got {parallel_candidates}")
        self.executor = executor
        self.sink = sink
        self.pool = _attach_pool(
            executor, workers=workers, ray_address=ray_address, num_cpus=num_cpus, resources=resources
        )
        self.lock = self.pool.driver_lock
        # (candidate hash, split) -> example id -> result: known() is asked for every
        # candidate after every stage, so it must not scan everything scored so far.
        self._memo: dict[tuple[str, str], dict[str, EvalResult]] = {}
        self._threads = ThreadPoolExecutor(
            max_workers=parallel_candidates, thread_name_prefix="promptopt-eval"
        )
        self._cancelled = threading.Event()
        self._running = 0
        self._running_lock = threading.Lock()

    # -- Evaluator interface -------------------------------------------------------------

    def known(self, candidate: Candidate, split: str) -> list[EvalResult]:
        """Results already computed in this process for ``candidate`` on ``split``."""
        with self.lock:
            return list(self._memo.get((candidate.hash, split), {}).values())

    def evaluate(self, candidate: Candidate, examples: Sequence[Example], split: str) -> list[EvalResult]:
        with self.lock:
            return self._evaluate(candidate, examples, split)

    def evaluate_many(self, jobs: Sequence[Job], split: str) -> list[list[EvalResult]]:
        """All ``jobs`` at once; results in the order of ``jobs``. When some fail (a spent
        budget), the others finish first, then the first failure in job order is raised."""
        # The same candidate twice runs in one thread, in order, so it is never asked twice.
        groups: dict[str, list[int]] = {}
        for index, (candidate, _) in enumerate(jobs):
            groups.setdefault(candidate.hash, []).append(index)
        futures: dict[int, Future[list[EvalResult]]] = {}
        try:
            for indices in groups.values():
                group = self._threads.submit(self._run_group, [jobs[i] for i in indices], split)
                for position, index in enumerate(indices):
                    futures[index] = _Pick(group, position).future
            outcomes: list[list[EvalResult] | BaseException] = []
            for index in range(len(jobs)):
                try:
                    outcomes.append(futures[index].result())
                except BaseException as exc:
                    outcomes.append(exc)
        except BaseException:
            # Ctrl-C: let every candidate stop after its current batch (stored), then leave.
            self._cancelled.set()
            for future in futures.values():
                future.exception()
            self._cancelled.clear()
            raise
        for outcome in outcomes:
            if isinstance(outcome, BaseException):
                raise outcome
        return [outcome for outcome in outcomes if not isinstance(outcome, BaseException)]

    def close(self) -> None:
        self._cancelled.set()
        self._threads.shutdown(wait=True)
        self.pool.close()

    # -- progress -----------------------------------------------------------------------

    def stats(self) -> dict[str, Any]:
        """For the progress display: ``workers``, ``in_flight`` (requests out to the
        actors), ``completed``, ``throughput_rps`` (last 10 s), ``resubmitted``,
        ``replaced_workers``, ``elapsed_s`` and ``candidates_running``."""
        with self._running_lock:
            running = self._running
        return {**self.pool.stats().to_dict(), "candidates_running": running}

    # -- internals ------------------------------------------------------------------------

    def _run_group(self, jobs: Sequence[Job], split: str) -> list[list[EvalResult]]:
        with self._running_lock:
            self._running += 1
        try:
            with self.lock:
                return [self._evaluate(candidate, examples, split) for candidate, examples in jobs]
        finally:
            with self._running_lock:
                self._running -= 1

    def _evaluate(self, candidate: Candidate, examples: Sequence[Example], split: str) -> list[EvalResult]:
        """Under the driver lock: the serial evaluator's logic."""
        memo = self._memo.setdefault((candidate.hash, split), {})
        missing = [e for e in examples if e.id not in memo]

        def on_batch(batch: Sequence[EvalResult]) -> None:
            self.sink(batch)
            for result in batch:
                self._memo.setdefault((result.candidate_hash, split), {})[result.example_id] = result
            if self._cancelled.is_set():
                raise _Cancelled("evaluation interrupted")

        if missing:
            self.executor.evaluate(candidate, missing, split, on_batch=on_batch)
        return [memo[e.id] for e in examples]


class _Pick:
    """The ``position``-th result of a group's future, as a future of its own."""

    def __init__(self, group: Future[list[list[EvalResult]]], position: int) -> None:
        self.future: Future[list[EvalResult]] = Future()

        def done(source: Future[list[list[EvalResult]]]) -> None:
            error = source.exception()
            if error is not None:
                self.future.set_exception(error)
            else:
                self.future.set_result(source.result()[position])

        group.add_done_callback(done)


def _attach_pool(
    executor: Executor,
    *,
    workers: int,
    ray_address: str | None,
    num_cpus: int | None,
    resources: Mapping[str, float] | None = None,
) -> RayBackend:
    """The RayBackend at the end of the executor's wrapper chain (``.inner`` links); when
    the chain ends in another backend, it is replaced by a pool serving that backend."""
    parent: Any = None
    node: Backend = executor.backend
    while not isinstance(node, RayBackend):
        inner = getattr(node, "inner", None)
        if not isinstance(inner, Backend):
            break
        parent, node = node, inner
    if isinstance(node, RayBackend):
        return node
    if type(node).__name__ in ("TransformersBackend", "LlamaCppBackend", "OpenAIBackend"):
        # A model loaded here would be copied to every worker; a client holds connections.
        raise ConfigError(
            f"the {type(node).__name__} was built in this process; a Ray pool builds it in its workers",
            hint="build the model backend with promptopt.pool.pool_backend(model, workers=...)",
        )
    pool = RayBackend.wrapping(
        node, workers=workers, ray_address=ray_address, num_cpus=num_cpus, resources=resources
    )
    if parent is None:
        executor.backend = pool
    else:
        parent.inner = pool
    return pool


def make_evaluator(
    executor: Executor,
    sink: ResultSink,
    *,
    workers: int | None = 0,
    ray_address: str | None = None,
    **options: Any,
) -> Evaluator:
    """The evaluator a search asks for: serial in this process when ``workers`` is 0 or
    None and no ``ray_address`` is given, else a :class:`RayEvaluator` with ``workers``
    actors (at least one) on the local Ray or the cluster at ``ray_address``."""
    if not workers and ray_address is None:
        return SerialEvaluator(executor, sink)
    return RayEvaluator(executor, sink, workers=max(1, workers or 1), ray_address=ray_address, **options)
