"""Contract test suites for policies and backends, as ``optuna.testing`` has for samplers.

The Policy and Backend contracts are written in docstrings
(:class:`promptopt.policies.Policy`, :class:`promptopt.backends.Backend`); these suites
check them, the same way for every implementation. Subclass one in a test module and
provide its fixture; pytest collects the inherited tests::

    from promptopt.testing.contracts import BackendContract, PolicyContract

    class TestMyPolicy(PolicyContract):
        @pytest.fixture
        def policy(self) -> str:
            return "my-policy"            # registered with @register_policy("my-policy")

    class TestMyBackend(BackendContract):
        @pytest.fixture
        def make_backend(self):
            return lambda: MyBackend(...)  # a fresh backend per call

Every policy must be deterministic for a seed, resume after an interruption to the
result an uninterrupted search reaches, and stay within the estimate it gives before
the search starts (and within a call limit). Every backend must answer one completion per
request in order, answer a greedy request the same way twice, answer a batch as it
answers its requests one by one, report each request exactly once through
``generate_each``, and be resumable through the response cache.

The policy suite runs on the fakes of this package (a space policy on
:func:`~promptopt.testing.space_fakes.space_backend` over
:data:`~promptopt.testing.space_fakes.SPACE`, an instruction policy on
:func:`~promptopt.testing.search_fakes.skilled_backend`), on the generated
``gsm-symbolic`` task, with small sizes: a policy's suite takes seconds. Importing this
module needs pytest (a test dependency); ``import promptopt`` never imports it.
"""

from __future__ import annotations

import functools
import json
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import pytest

from promptopt.backends import Backend, CachingBackend
from promptopt.backends.base import OnResults
from promptopt.budget import Budget
from promptopt.controller import SearchConfig, SearchResult, search
from promptopt.policies import get_policy
from promptopt.store import Store
from promptopt.tasks import Task, get_task
from promptopt.testing.search_fakes import skilled_backend
from promptopt.testing.space_fakes import SPACE, space_backend
from promptopt.types import Candidate, Completion, GenerationRequest, Message

# The most samples one example can take in SPACE: a call limit is overshot by at most that.
MAX_SAMPLES = max(SPACE["dimensions"]["samples"]["choices"])


class Interrupted(KeyboardInterrupt):
    """What :class:`InterruptingBackend` raises: a Ctrl-C in the middle of a search."""


class InterruptingBackend(Backend):
    """``inner``, until more than ``after`` requests have been asked of it: then a Ctrl-C."""

    def __init__(self, inner: Backend, after: int) -> None:
        self.inner = inner
        self.after = after
        self.asked = 0

    @property
    def model_id(self) -> str:
        return self.inner.model_id

    def generate(self, requests: Sequence[GenerationRequest]) -> list[Completion]:
        if self.asked + len(requests) > self.after:
            raise Interrupted
        self.asked += len(requests)
        return self.inner.generate(requests)


@functools.lru_cache(maxsize=1)
def _task() -> Task:
    return get_task("gsm-symbolic")  # generating it takes a second or two: once per process


def _fingerprint(result: SearchResult) -> dict[str, Any]:
    """What a search decided: the same for two runs that decided the same."""
    return {
        "winner": result.winner.hash,
        "baseline": result.baseline.hash,
        "leaderboard": [
            (row.candidate.hash, row.origin, round(row.mean, 9), row.n) for row in result.leaderboard
        ],
        "test": json.loads(json.dumps(result.test, sort_keys=True, default=str)),
        "significant": result.significant,
        "search_calls": result.spent["calls"],
    }


class PolicyContract:
    """The contract of a search policy. Provide the fixture ``policy`` (a registered name)."""

    @pytest.fixture
    def policy(self) -> str:  # pragma: no cover - subclasses provide it
        raise NotImplementedError("subclasses provide the `policy` fixture: a registered policy name")

    @pytest.fixture
    def task(self) -> Task:
        return _task()

    @staticmethod
    def config(policy: str, **overrides: Any) -> SearchConfig:
        values: dict[str, Any] = {
            "task": "gsm-symbolic", "model": "fake", "policy": policy, "seed": 1,
            "base": Candidate(instruction="Answer."), "dev_size": 16, "test_size": 20,
            "n_proposals": 4, "rounds": 1, "race_start": 4,
        }  # fmt: skip
        if get_policy(policy).needs_space:
            values["space"] = SPACE
        values.update(overrides)
        return SearchConfig.from_preset("light", **values)

    @staticmethod
    def backend(policy: str, task: Task) -> Backend:
        return space_backend(task) if get_policy(policy).needs_space else skilled_backend(task)

    def _search(self, policy: str, task: Task, db: str, **overrides: Any) -> SearchResult:
        result = search(
            self.config(policy, **overrides), backend=self.backend(policy, task), db=db, task=task
        )
        assert isinstance(result, SearchResult)
        return result

    def test_same_seed_same_search(self, policy: str, task: Task, tmp_path: Path) -> None:
        first = self._search(policy, task, f"sqlite:///{tmp_path / 'a.db'}")
        second = self._search(policy, task, f"sqlite:///{tmp_path / 'b.db'}")
        assert _fingerprint(first) == _fingerprint(second)

    def test_resume_after_an_interruption_reaches_the_same_result(
        self, policy: str, task: Task, tmp_path: Path
    ) -> None:
        reference = self._search(policy, task, f"sqlite:///{tmp_path / 'reference.db'}")
        db = f"sqlite:///{tmp_path / 'interrupted.db'}"
        interrupting = InterruptingBackend(
            self.backend(policy, task), after=max(1, reference.model_calls // 2)
        )
        with pytest.raises(KeyboardInterrupt):
            search(self.config(policy), backend=interrupting, db=db, task=task)
        with Store(db) as store:
            (run,) = store.list_runs()
            assert run.status == "interrupted"
        resumed = search(db=db, resume=run.id, backend=self.backend(policy, task), task=task)
        assert isinstance(resumed, SearchResult) and resumed.run_id == run.id
        assert _fingerprint(resumed) == _fingerprint(reference)
        with Store(db) as store:
            rows = store.get_evaluations(run.id)
        assert len(rows) == len({(r.candidate_hash, r.split, r.example_id) for r in rows})  # no duplicates

    def test_spends_within_its_estimate_and_stops_at_a_call_limit(
        self, policy: str, task: Task, tmp_path: Path
    ) -> None:
        db = f"sqlite:///{tmp_path / 'estimate.db'}"
        plan = search(self.config(policy), db=db, task=task, dry_run=True)
        assert isinstance(plan, dict)
        unlimited = self._search(policy, task, db)
        assert unlimited.spent["calls"] <= plan["search_calls"]
        assert unlimited.final_calls <= plan["final_calls"]
        # Half of what it spends unlimited: it stops there, and still finishes its evaluation.
        limit = unlimited.spent["calls"] // 2
        limited = self._search(
            policy, task, f"sqlite:///{tmp_path / 'limit.db'}", budget=Budget(max_calls=limit)
        )
        assert limited.spent["calls"] <= limit + MAX_SAMPLES  # at most one example's samples past it
        assert limited.stopped_reason is not None and "calls" in limited.stopped_reason
        assert limited.test["n"] == unlimited.test["n"]


QUESTIONS = ("What is 2 plus 2?", "Name a colour.", "Count to three, please.", "Say hello.", "2 + 5 = ?")


def contract_requests(n: int = len(QUESTIONS), max_tokens: int = 16) -> list[GenerationRequest]:
    """Greedy requests of different lengths: what the backend suite sends."""
    return [
        GenerationRequest(
            messages=(Message("system", "Answer briefly."), Message("user", question)), max_tokens=max_tokens
        )
        for question in QUESTIONS[:n]
    ]


class Unclosed(Backend):
    """``inner`` with a no-op ``close``: a backend loaded once for a test module, which the
    suite's tests may "close" without unloading it for the next."""

    def __init__(self, inner: Backend) -> None:
        self.inner = inner

    @property
    def model_id(self) -> str:
        return self.inner.model_id

    def generate(self, requests: Sequence[GenerationRequest]) -> list[Completion]:
        return self.inner.generate(requests)

    def generate_each(
        self, requests: Sequence[GenerationRequest], on_results: OnResults | None
    ) -> list[Completion]:
        return self.inner.generate_each(requests, on_results)

    def describe(self) -> dict[str, object]:
        return self.inner.describe()


class BackendContract:
    """The contract of a backend. Provide the fixture ``make_backend``: a callable that
    returns a fresh backend (two calls: two backends of the same model)."""

    @pytest.fixture
    def make_backend(self) -> Callable[[], Backend]:  # pragma: no cover - subclasses provide it
        raise NotImplementedError("subclasses provide the `make_backend` fixture")

    @pytest.fixture
    def requests(self) -> list[GenerationRequest]:
        """What the suite sends (override for a slow backend: fewer, shorter requests)."""
        return contract_requests()

    @pytest.fixture
    def backend(self, make_backend: Callable[[], Backend]) -> Any:
        backend = make_backend()
        yield backend
        backend.close()

    def test_one_completion_per_request_in_order(
        self, backend: Backend, requests: list[GenerationRequest]
    ) -> None:
        completions = backend.generate(requests)
        assert len(completions) == len(requests)
        assert all(isinstance(c, Completion) and c.ok for c in completions)
        assert backend.generate([]) == []

    def test_greedy_is_deterministic(
        self, make_backend: Callable[[], Backend], backend: Backend, requests: list[GenerationRequest]
    ) -> None:
        first = [c.text for c in backend.generate(requests)]
        assert [c.text for c in backend.generate(requests)] == first
        other = make_backend()  # same model_id: same greedy output
        try:
            assert other.model_id == backend.model_id
            assert [c.text for c in other.generate(requests)] == first
        finally:
            other.close()

    def test_batch_equals_one_by_one(self, backend: Backend, requests: list[GenerationRequest]) -> None:
        together = [c.text for c in backend.generate(requests)]
        alone = [backend.generate([request])[0].text for request in requests]
        assert together == alone

    def test_generate_each_reports_every_request_once(
        self, backend: Backend, requests: list[GenerationRequest]
    ) -> None:
        reported: dict[int, Completion] = {}

        def on_results(pairs: list[tuple[int, Completion]]) -> None:
            for index, completion in pairs:
                assert index not in reported
                reported[index] = completion

        completions = backend.generate_each(requests, on_results)
        assert sorted(reported) == list(range(len(requests)))
        assert [reported[i].text for i in range(len(requests))] == [c.text for c in completions]

    def test_resumes_from_the_response_cache(
        self, make_backend: Callable[[], Backend], requests: list[GenerationRequest], tmp_path: Path
    ) -> None:
        with Store(f"sqlite:///{tmp_path / 'cache.db'}") as store:
            first = CachingBackend(make_backend(), store)
            answers = [c.text for c in first.generate(requests)]
            first.inner.close()
            again = CachingBackend(make_backend(), store)  # a new process, the same store
            assert [c.text for c in again.generate(requests)] == answers
            again.inner.close()
        assert (first.misses, again.hits, again.misses) == (len(requests), len(requests), 0)

    def test_describe_is_storable(self, backend: Backend) -> None:
        json.dumps(backend.describe())  # stored with every run
