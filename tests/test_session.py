"""The session (promptopt.session): one store, one run lifecycle and one model stack, built
once and used by the search, ``evaluate`` and the CLI; search as prepare → plan → run, so the
CLI searches once and knows the run id after Ctrl-C."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import pytest
from click.testing import CliRunner

import promptopt.controller
import promptopt.session
from promptopt.backends import Backend, CachingBackend, RetryingBackend
from promptopt.backends.fake import FakeBackend
from promptopt.budget import Budget, BudgetedBackend
from promptopt.cli import cli
from promptopt.controller import PreparedSearch, SearchConfig, prepare_search, search
from promptopt.evaluation import evaluate
from promptopt.session import ModelStack, Session
from promptopt.store import Store
from promptopt.tasks import Task, get_task
from promptopt.testing.search_fakes import skilled_backend
from promptopt.types import Candidate, Completion, GenerationRequest, Message

SMALL = ["--dev-size", "8", "--test-size", "8", "--proposals", "2", "--rounds", "0", "--no-progress"]


@pytest.fixture(scope="module")
def task() -> Task:
    return get_task("gsm-symbolic")


def _config(**overrides: Any) -> SearchConfig:
    values = {"dev_size": 8, "test_size": 8, "n_proposals": 2, "rounds": 0, **overrides}
    return SearchConfig.from_preset("light", task="gsm-symbolic", model="fake",
                                    base=Candidate(instruction="Answer."), **values)  # fmt: skip


def test_the_model_stack_is_retry_then_cache_then_budget_with_its_counters(db_url: str) -> None:
    model = FakeBackend(lambda request: "42")
    with Session(db_url) as session:
        stack = session.models(model, budget=Budget(max_calls=10))
        assert isinstance(stack.backend, BudgetedBackend) and stack.backend is stack.budgeted
        assert isinstance(stack.budgeted.inner, CachingBackend) and stack.budgeted.inner is stack.caching
        assert isinstance(stack.caching.inner, RetryingBackend) and stack.caching.inner.inner is model
        request = GenerationRequest(messages=(Message("user", "What is 6 x 7?"),), max_tokens=8)
        stack.backend.generate([request])
        stack.backend.generate([request])
        assert (stack.model_calls, stack.cache_hits, stack.retries, stack.spend.calls) == (1, 1, 0, 2)
    bare = ModelStack(model)  # no store, no budget: retries alone (LoadedPrompt.run's stack)
    assert bare.backend is bare.retrying and bare.caching is None and bare.spend is None


def test_a_session_closes_the_store_it_opened_and_not_one_it_was_given(db_url: str) -> None:
    closed: list[str] = []
    session = Session(db_url)
    session.store.close = lambda: closed.append("own")  # type: ignore[method-assign]
    with session:
        pass
    assert closed == ["own"]
    store = Store(db_url)
    store.close = lambda: closed.append("given")  # type: ignore[method-assign]
    with Session(store):
        pass
    assert closed == ["own"]
    same, opened = Session.of(session)
    assert same is session and not opened


def _count_stacks(monkeypatch: pytest.MonkeyPatch) -> list[ModelStack]:
    made: list[ModelStack] = []
    real = promptopt.session.Session.models

    def counting(self: Session, backend: Backend, **options: Any) -> ModelStack:
        made.append(real(self, backend, **options))
        return made[-1]

    monkeypatch.setattr(promptopt.session.Session, "models", counting)
    return made


def test_search_and_evaluate_build_one_model_stack_each(
    task: Task, db_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    made = _count_stacks(monkeypatch)
    result = search(_config(), backend=skilled_backend(task), db=db_url)
    assert len(made) == 1 and not isinstance(result, dict)
    assert result.model_calls == made[0].model_calls and result.cache_hits == made[0].cache_hits
    made.clear()
    report = evaluate(task, "Answer.", skilled_backend(task), split="dev", limit=4, db=db_url)
    assert len(made) == 1 and report.calls == made[0].model_calls


def test_prepare_then_run_stores_nothing_until_run_and_keeps_the_run_id(task: Task, db_url: str) -> None:
    with Session(db_url) as session:
        prepared = prepare_search(_config(), db=session, task=task)
        assert isinstance(prepared, PreparedSearch) and prepared.run_id is None
        assert prepared.plan["dev_size"] == 8 and session.store.list_runs() == []
        result = prepared.run()
        assert prepared.run_id == result.run_id
        assert session.store.get_run(result.run_id).status == "finished"


class _Interrupting(Backend):
    """Answers like ``inner`` for ``calls`` backend calls, then stores an unrelated, newer run
    in ``db`` (what a guess of "the newest run" would pick) and raises KeyboardInterrupt."""

    def __init__(self, inner: Backend, calls: int, db: str) -> None:
        self.inner, self.left, self.db = inner, calls, db

    @property
    def model_id(self) -> str:
        return self.inner.model_id

    def generate(self, requests: Sequence[GenerationRequest]) -> list[Completion]:
        if self.left == 0:
            with Store(self.db) as store:
                store.create_run(kind="eval", task="other", model="fake", config={})
            raise KeyboardInterrupt
        self.left -= 1
        return self.inner.generate(requests)


def test_a_prepared_search_knows_its_run_id_after_ctrl_c(task: Task, db_url: str) -> None:
    prepared = prepare_search(
        _config(), db=db_url, task=task, backend=_Interrupting(skilled_backend(task), 3, db_url)
    )
    with prepared, pytest.raises(KeyboardInterrupt):
        prepared.run()
    with Store(db_url) as store:
        assert prepared.run_id is not None and store.get_run(prepared.run_id).status == "interrupted"
        assert store.list_runs(limit=1)[0].id != prepared.run_id  # the newest run is another one


def test_the_cli_searches_once_and_prints_the_exact_resume_line_after_ctrl_c(
    task: Task, db_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    prepared: list[PreparedSearch] = []
    real_prepare = promptopt.controller.prepare_search

    def recording(*args: Any, **kwargs: Any) -> PreparedSearch:
        prepared.append(real_prepare(*args, **kwargs))
        return prepared[-1]

    def no_search(*args: Any, **kwargs: Any) -> None:
        raise AssertionError("the CLI prepares and runs the search; it does not call search()")

    monkeypatch.setattr(promptopt.controller, "prepare_search", recording)
    monkeypatch.setattr(promptopt.controller, "search", no_search)
    monkeypatch.setattr(promptopt.controller, "make_backend",
                        lambda spec, **kw: _Interrupting(skilled_backend(task), 3, db_url))  # fmt: skip
    runner = CliRunner()
    stopped = runner.invoke(
        cli, ["search", "--task", "gsm-symbolic", "--model", "fake", "--db", db_url, *SMALL]
    )
    assert stopped.exit_code == 130, stopped.output
    assert len(prepared) == 1
    run_id = prepared[0].run_id
    with Store(db_url) as store:
        assert run_id is not None and store.get_run(run_id).status == "interrupted"
        assert store.list_runs(limit=1)[0].id != run_id
    assert f"promptopt search --resume {run_id}" in stopped.stderr
    # The resume goes through the same door, once, and finishes the run.
    monkeypatch.setattr(promptopt.controller, "make_backend", lambda spec, **kw: skilled_backend(task))
    resumed = runner.invoke(cli, ["search", "--resume", run_id, "--db", db_url, "--no-progress", "--json"])
    assert resumed.exit_code == 0, resumed.output
    assert len(prepared) == 2 and prepared[1].run_id == run_id
    with Store(db_url) as store:
        assert store.get_run(run_id).status == "finished"


def test_ctrl_c_before_the_run_is_stored_says_there_is_nothing_to_resume(
    db_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    def loading(spec: str, **options: Any) -> Backend:  # Ctrl-C while the model loads
        raise KeyboardInterrupt

    monkeypatch.setattr(promptopt.controller, "make_backend", loading)
    stopped = CliRunner().invoke(
        cli, ["search", "--task", "gsm-symbolic", "--model", "fake", "--db", db_url, *SMALL]
    )
    assert stopped.exit_code == 130, stopped.output
    assert "nothing to resume" in stopped.stderr and "--resume" not in stopped.stderr
    with Store(db_url) as store:
        assert store.list_runs() == []
