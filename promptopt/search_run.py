"""The wiring of one search (:class:`SearchRun`): the model stacks of the task's and the
proposer's model on the session, the proposer, the executor and the evaluator (serial, or
the Ray pool), the candidates met so far with their origins, and the counters the report
gives. The controller (:mod:`promptopt.controller`) runs the ask/tell loop over it."""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from typing import Any

from promptopt.backends import Backend
from promptopt.bias.costs import candidate_calls
from promptopt.budget import Budget, BudgetedBackend, Spend
from promptopt.executor import Executor
from promptopt.proposers import Proposer
from promptopt.racing import Standing, standing
from promptopt.search_config import SearchConfig
from promptopt.session import ModelStack, Session
from promptopt.tasks import Task
from promptopt.types import Candidate, EvalResult, Example


class SearchRun:
    """The wiring of one search: model stacks, store, evaluator, policy."""

    def __init__(
        self,
        config: SearchConfig,
        task: Task,
        session: Session,
        backend: Backend,
        proposer_backend: Backend | None,
    ):
        self.config = config
        self.task = task
        self.store = session.store
        from promptopt.pool import RayBackend

        # Under the Ray pool, a retry's backoff must release the driver lock (else it
        # stalls every candidate in flight); serially it is a plain sleep.
        sleep = backend.driver_lock.sleep if isinstance(backend, RayBackend) else time.sleep
        self.spend = Spend()
        # The budget (its prices resolved by prepare_search) charges the task's and the
        # proposer's requests to one spend.
        self.models = session.models(backend, budget=config.budget, spend=self.spend, sleep=sleep)
        self.budgeted: BudgetedBackend = self.models.budgeted  # type: ignore[assignment]
        self.proposer_models: ModelStack | None = None
        if proposer_backend is not None:
            self.proposer_models = session.models(proposer_backend, budget=config.budget, spend=self.spend)
        self.proposer = Proposer(
            self.proposer_models.backend if self.proposer_models else self.budgeted,
            task,
            slot=config.slot,
            temperature=config.proposer_temperature,
            seed=config.seed,
        )
        # The model that writes bootstrapped demos (SearchConfig.demo_teacher): None, the task model's.
        self.teacher: Backend | None = self.proposer.backend if config.demo_teacher == "proposer" else None
        self.search_executor = Executor(task, self.budgeted, batch_size=config.batch_size)
        self.run_id = ""
        from promptopt.pool import make_evaluator

        self.evaluator = make_evaluator(
            self.search_executor, self._store_results, workers=config.workers, ray_address=config.ray_address,
            resources=config.ray_resources,
        )  # fmt: skip
        self.heartbeat: Any = None  # the lease's Heartbeat while the search runs
        self.phase_progress: Callable[[str, float], None] | None = None
        self.candidates: dict[str, Candidate] = {config.base.hash: config.base}
        self.origins: dict[str, str] = {config.base.hash: "seed"}

    def _store_results(self, batch: Sequence[EvalResult]) -> None:
        if self.heartbeat is not None:  # taken over by another process: stop, write nothing more
            self.heartbeat.check()
        self.store.record_evaluations(self.run_id, batch)

    def register(self, candidate: Candidate, origin: str, parent: str | None) -> None:
        if candidate.hash not in self.candidates or origin != "parent":
            self.candidates.setdefault(candidate.hash, candidate)
            self.origins.setdefault(candidate.hash, origin)
            self.store.add_candidate(
                self.run_id, candidate, origin=self.origins[candidate.hash], parent=parent
            )

    def evaluate_for_policy(
        self, candidate: Candidate, examples: Sequence[Example], split: str, origin: str, parent: str | None
    ) -> list[EvalResult]:
        """A policy's own evaluation (reflect's minibatches): registered, then evaluated as any."""
        self.register(candidate, origin, parent)
        return self.evaluator.evaluate(candidate, examples, split)

    def scores(self, candidate_hash: str, examples: Sequence[Any], split: str) -> list[float | None]:
        results = self.evaluator.evaluate(self.candidates[candidate_hash], examples, split)
        return [r.score for r in results]

    def limit_calls(self, budget: Budget) -> None:
        """Hold the task's and the proposer's requests to ``budget`` from now on (the
        controller's reserve for the final scoring, then no limit for the final)."""
        self.budgeted.budget = budget
        if self.proposer_models is not None and self.proposer_models.budgeted is not None:
            self.proposer_models.budgeted.budget = budget

    def dev_calls_left(self, candidate_hashes: Sequence[str], dev: Sequence[Example]) -> dict[str, int]:
        """Per candidate, the requests scoring it on all of ``dev`` still takes: its dev
        items with no stored result, times its calls per item."""
        out = {}
        for candidate_hash in candidate_hashes:
            candidate = self.candidates[candidate_hash]
            scored = {r.example_id for r in self.evaluator.known(candidate, "dev")}
            out[candidate_hash] = candidate_calls(candidate) * sum(1 for e in dev if e.id not in scored)
        return out

    def known_standings(self) -> dict[str, Standing]:
        """Every candidate's standing on the dev results it has (balanced accuracy under
        ``selection="balanced"``, as the race ranks them)."""
        order = {h: i for i, h in enumerate(self.candidates)}
        balanced = self.config.balanced_race
        out = {}
        for candidate_hash, candidate in self.candidates.items():
            known = self.evaluator.known(candidate, "dev")
            if known:
                out[candidate_hash] = standing(
                    candidate_hash, [r.score for r in known], order[candidate_hash],
                    [r.gold for r in known] if balanced else None,
                )  # fmt: skip
        return out

    def _stacks(self) -> list[ModelStack]:
        return [self.models, *([self.proposer_models] if self.proposer_models else [])]

    @property
    def model_calls(self) -> int:
        return sum(stack.model_calls for stack in self._stacks())

    def faults(self) -> dict[str, int]:
        """Failed requests met (each attempt counts), re-sent requests, and evaluations
        stored as failures (every sample failed; excluded from scores)."""
        failed = sum(
            1
            for candidate in self.candidates.values()
            for split in ("dev", "test")
            for result in self.evaluator.known(candidate, split)
            if result.score is None
        )
        return {
            "faults_met": sum(stack.faults_seen for stack in self._stacks()),
            "retries": sum(stack.retries for stack in self._stacks()),
            "failed_evaluations": failed,
        }

    @property
    def cache_hits(self) -> int:
        return sum(stack.cache_hits for stack in self._stacks())
