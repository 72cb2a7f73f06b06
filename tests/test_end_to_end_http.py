"""The whole path over real HTTP: CLI → evaluate → executor → retry/cache wrappers →
OpenAI backend → a real OpenAI-compatible server on loopback → store."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from promptopt.cli import cli
from promptopt.store import Store
from promptopt.tasks import get_task
from promptopt.testing.openai_server import FakeOpenAIServer, FaultPlan

SECRET = "sk-test-DO-NOT-STORE-0123456789"


def solver() -> Any:
    task = get_task("gsm-symbolic")
    answers = {
        e.inputs["question"]: task.target(e) for split in ("dev", "test") for e in task.examples(split)
    }

    def respond(request: dict[str, Any]) -> str:
        last = request["messages"][-1]["content"]
        question = next(q for q in answers if q in last)
        return f"Let's see... The answer is {answers[question]}."

    return respond


def test_eval_over_http_with_faults_completes_and_stores_no_secret(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("MY_KEY", SECRET)
    db = tmp_path / "e2e.db"
    plan = FaultPlan(rates={"rate_limit": 0.1, "server_error": 0.1}, seed=3, retry_after="0")
    with FakeOpenAIServer(solver(), faults=plan, api_key=SECRET) as server:
        result = CliRunner().invoke(cli, [
            "eval", "--task", "gsm-symbolic", "--limit", "12", "--model", "openai/fake-model",
            "--base-url", server.base_url, "--api-key-env", "MY_KEY", "--db", str(db), "--json",
        ])  # fmt: skip
        assert result.exit_code == 0, result.stderr
        summary = json.loads(result.stdout)
        faults = sum(server.fault_counts.values())
    assert faults > 0, "the fault plan should have injected something"
    assert summary["n_failed"] == 0 and summary["accuracy"] == 1.0
    assert summary["retries"] >= faults and summary["calls"] == 12 + summary["retries"]
    store = Store(f"sqlite:///{db}")
    assert len(store.get_evaluations(summary["run_id"])) == 12
    assert "openai/fake-model@127.0.0.1" in store.get_run(summary["run_id"]).model
    store.close()
    for path in tmp_path.iterdir():  # database, WAL and anything else written
        assert SECRET.encode() not in path.read_bytes(), f"API key found in {path.name}"
    assert SECRET not in result.stdout + result.stderr


def test_server_that_always_fails_gives_failures_not_wrong_answers(tmp_path: Path) -> None:
    db = tmp_path / "fail.db"
    with FakeOpenAIServer(faults=FaultPlan(rates={"bad_request": 1.0})) as server:
        result = CliRunner().invoke(cli, [
            "eval", "--task", "gsm-symbolic", "--limit", "3", "--model", "openai/fake-model",
            "--base-url", server.base_url, "--db", str(db), "--json",
        ])  # fmt: skip
    # The summary is printed, then the error: nothing was measured, so the exit is not 0 (#24).
    assert result.exit_code == 2 and "every request of the evaluation failed" in result.stderr, result.stderr
    summary = json.loads(result.stdout)
    assert summary["n_failed"] == 3 and summary["retries"] == 0
    store = Store(f"sqlite:///{db}")
    rows = store.get_evaluations(summary["run_id"])
    assert all(r.score is None and r.error for r in rows)
    store.close()


def test_search_at_20_percent_faults_completes_and_counts_them(tmp_path: Path) -> None:
    from promptopt.backends.openai_backend import OpenAIBackend
    from promptopt.controller import SearchConfig, SearchResult, search
    from promptopt.types import Candidate

    plan = FaultPlan(rates={"rate_limit": 0.05, "server_error": 0.05, "unavailable": 0.05, "malformed_json": 0.05},
                     seed=11, retry_after="0")  # fmt: skip
    respond = solver()

    def answer_or_propose(request: dict[str, Any]) -> str:
        last = request["messages"][-1]["content"]
        if last.startswith(("A teacher gave", "Rewrite the following")):
            return "Solve the problem."
        return respond(request)

    with FakeOpenAIServer(answer_or_propose, faults=plan) as server:
        backend = OpenAIBackend("fake-model", base_url=server.base_url, concurrency=8)
        config = SearchConfig.from_preset("light", task="gsm-symbolic", model="openai/fake-model",
                                          base=Candidate(instruction="Answer."), dev_size=12, test_size=20,
                                          n_proposals=2, rounds=0, race_start=6)  # fmt: skip
        result = search(config, backend=backend, db=f"sqlite:///{tmp_path / 's.db'}")
        injected = sum(server.fault_counts.values())
    assert isinstance(result, SearchResult)
    assert injected > 0 and result.faults["faults_met"] == injected
    assert result.faults["retries"] >= injected - result.faults["failed_evaluations"]
    assert result.test["n"] + result.faults["failed_evaluations"] >= 20
    assert result.test["winner"]["accuracy"] == 1.0  # faults were retried, not scored as wrong answers
