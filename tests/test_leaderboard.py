"""Leaderboard and `show` over a real SQLite store filled by real searches and evals
(fake backends). The SQL aggregate is checked against an independent computation from
the stored evaluation rows."""

from __future__ import annotations

import json
from pathlib import Path

import click
import pytest
from click.testing import CliRunner

import promptopt
from promptopt.backends import FakeBackend
from promptopt.controller import SearchConfig, SearchResult, search
from promptopt.errors import ConfigError, StoreError
from promptopt.leaderboard import (
    CandidateDetails,
    RunDetails,
    best_by_calls,
    leaderboard,
    resolve,
    show,
)
from promptopt.prompt import render_messages
from promptopt.stats import wilson_interval
from promptopt.store import Store
from promptopt.tasks import Task, get_task
from promptopt.testing.search_fakes import skilled_backend
from promptopt.types import Candidate, Completion

TASK = "gsm-symbolic"


@pytest.fixture(scope="module")
def task() -> Task:
    return get_task(TASK)


def base_candidate(task: Task, instruction: str = "Answer.") -> Candidate:
    demos = tuple(e.id for e in task.examples("train")[:2] if e.solution)
    return Candidate(instruction=instruction, demo_ids=demos, cot_mode="few_shot", cot_trigger="Let's think.",
                     answer_format=task.spec.answer_format)  # fmt: skip


def run_search(task: Task, db: str, *, instruction: str = "Answer.", seed: int = 0) -> SearchResult:
    """A small but real search (APE over the skilled fake model) stored in ``db``."""
    config = SearchConfig.from_preset(
        "light", task=TASK, model="fake", base=base_candidate(task, instruction), dev_size=16, test_size=24,
        n_proposals=4, rounds=1, race_start=4, seed=seed,
    )  # fmt: skip
    result = search(config, backend=skilled_backend(task), db=db)
    assert isinstance(result, SearchResult)
    return result


@pytest.fixture(scope="module")
def filled(task: Task, tmp_path_factory: pytest.TempPathFactory) -> dict[str, object]:
    db = f"sqlite:///{tmp_path_factory.mktemp('lb') / 'lb.db'}"
    result = run_search(task, db)
    # An eval of another "model" on test only, with failures (a failure is not a wrong answer).
    replies = [Completion(text="", error="HTTP 503", retryable=True)] * 3
    failing = FakeBackend(model="fake/other")
    failing.enqueue(*replies)
    evaluation = promptopt.evaluate(task, Candidate(instruction="Just answer."), failing, split="test", limit=10,
                                    db=db, max_attempts=1)  # fmt: skip
    return {"db": db, "search": result, "eval": evaluation}


def _independent(
    store: Store, run_id: str, candidate_hash: str, split: str
) -> tuple[float, float, float, int, int]:
    rows = store.get_evaluations(run_id, candidate_hash, split)
    scored = [r.score for r in rows if r.score is not None]
    low, high = wilson_interval(sum(scored), len(scored))
    return sum(scored) / len(scored) if scored else 0.0, low, high, len(scored), len(rows) - len(scored)


def test_leaderboard_matches_the_stored_rows_and_ranks_by_dev(filled: dict[str, object]) -> None:
    db = str(filled["db"])
    result = filled["search"]
    assert isinstance(result, SearchResult)
    with Store(db) as store:
        entries = leaderboard(store, top=None)
        assert entries, "the search's candidates are on the leaderboard"
        search_rows = [e for e in entries if e.run_id == result.run_id]
        assert {e.candidate for e in search_rows} == {r.candidate.hash for r in result.leaderboard}
        for entry in search_rows:
            assert entry.dev is not None
            mean, low, high, n, failed = _independent(store, entry.run_id, entry.candidate, "dev")
            assert (entry.dev.accuracy, entry.dev.n, entry.dev.n_failed) == (pytest.approx(mean), n, failed)
            assert (entry.dev.ci_low, entry.dev.ci_high) == (pytest.approx(low), pytest.approx(high))
            rows = store.get_evaluations(entry.run_id, entry.candidate)
            tokens = sum(r.tokens_in + r.tokens_out for r in rows) / len(rows)
            assert entry.tokens_per_example == pytest.approx(tokens)
            assert entry.policy == "ape" and entry.kind == "search"
        # Ranked by dev accuracy, ties by n; the eval run without dev comes last.
        devs = [(e.dev.accuracy, e.dev.n) for e in entries if e.dev is not None]
        assert devs == sorted(devs, reverse=True)
        assert entries[-1].dev is None and entries[-1].kind == "eval"
        # Test scores exist exactly for the winner and the starting prompt.
        with_test = {e.candidate for e in search_rows if e.test is not None}
        assert with_test == {result.winner.hash, result.baseline.hash}
        winner = next(e for e in search_rows if e.candidate == result.winner.hash)
        assert winner.test is not None and winner.test.accuracy == pytest.approx(
            result.test["winner"]["accuracy"]
        )
        assert winner.origin != "seed" and winner.rank == 1


def test_failures_are_excluded_from_n_and_counted(filled: dict[str, object]) -> None:
    evaluation = filled["eval"]
    with Store(str(filled["db"])) as store:
        (entry,) = leaderboard(store, model="fake/other")
    assert entry.test is not None and entry.test.n_failed == 3 and entry.test.n == 7
    assert entry.test.accuracy == pytest.approx(evaluation.accuracy)  # type: ignore[attr-defined]
    assert entry.policy == "eval" and entry.origin == "user"


def test_filters_and_top(filled: dict[str, object]) -> None:
    result = filled["search"]
    assert isinstance(result, SearchResult)
    with Store(str(filled["db"])) as store:
        assert {e.model for e in leaderboard(store, model="fake", top=None)} == {"fake"}
        assert len(leaderboard(store, top=3)) == 3
        assert leaderboard(store, task="no-such-task") == []
        only = leaderboard(store, run=result.run_id, top=None)
        assert {e.run_id for e in only} == {result.run_id}
        assert all(e.dev is not None and e.dev.n >= 16 for e in leaderboard(store, min_dev_n=16, top=None))
        with pytest.raises(StoreError, match="did you mean"):
            leaderboard(store, run=result.run_id[:-1] + ("0" if result.run_id[-1] != "0" else "1"))
        with pytest.raises(ConfigError):
            leaderboard(store, top=0)


def test_cost_from_a_price_file(filled: dict[str, object], tmp_path: Path) -> None:
    prices = tmp_path / "prices.yaml"
    prices.write_text("fake: {input: 1.0, output: 10.0}\n")
    with Store(str(filled["db"])) as store:
        priced = leaderboard(store, model="fake", prices=prices, top=2)
        unpriced = leaderboard(store, model="fake", top=2)
    for entry in priced:
        expected = (entry.tokens_in_per_example * 1.0 + entry.tokens_out_per_example * 10.0) / 1e6
        assert entry.cost_per_example == pytest.approx(expected) and expected > 0
    assert all(e.cost_per_example is None for e in unpriced)


def test_best_by_calls_ends_at_the_top_of_the_leaderboard(filled: dict[str, object]) -> None:
    # The leader's dev accuracy so far (#24.10): it ends where the table's top is, and
    # never stays above every candidate's final score.
    result = filled["search"]
    assert isinstance(result, SearchResult)
    with Store(str(filled["db"])) as store:
        points = best_by_calls(store, result.run_id, min_n=4)
        total = sum(len(r.samples) for r in store.get_evaluations(result.run_id))
        entries = leaderboard(store, run=result.run_id, top=None)
    assert points and points[-1][0] == total
    calls = [p[0] for p in points]
    assert calls == sorted(calls)
    top = max(e.dev.accuracy for e in entries if e.dev is not None and e.dev.n >= 4)
    assert points[-1][1] == pytest.approx(top)


def test_show_run_and_candidate(filled: dict[str, object], task: Task) -> None:
    result = filled["search"]
    assert isinstance(result, SearchResult)
    with Store(str(filled["db"])) as store:
        details = show(store, result.run_id[:6])
        assert isinstance(details, RunDetails) and details.best is not None
        assert details.best.candidate == result.winner
        candidate = show(store, result.winner.hash)
        assert isinstance(candidate, CandidateDetails)
        example = task.examples("dev")[0]
        expected = [m.to_dict() for m in render_messages(result.winner, task, example)]
        assert candidate.messages is not None
        # The rendered prompt is the real one with {question} where the input goes.
        assert [
            m["content"].replace("{question}", example.inputs["question"]) for m in candidate.messages
        ] == [m["content"] for m in expected]
        assert [d["id"] for d in candidate.demos] == list(result.winner.demo_ids)
        assert candidate.demos[0]["solution"]
        assert len(candidate.results) == len(store.get_evaluations(result.run_id, result.winner.hash))
        assert {r.split for r in candidate.results} == {"dev", "test"}
        with pytest.raises(StoreError, match="no run or candidate"):
            resolve(store, "zzzz-not-there")


def test_ambiguous_prefix_is_refused(filled: dict[str, object]) -> None:
    with Store(str(filled["db"])) as store:
        hashes = [e.candidate for e in leaderboard(store, top=None)]
        runs = [e.run_id for e in leaderboard(store, top=None)]
    shared = next(
        (a[0] for a in hashes + runs if sum(1 for h in hashes + runs if h.startswith(a[0])) > 1), None
    )
    if shared is None:  # pragma: no cover - 10+ random hex ids always share a first digit
        pytest.skip("no shared one-character prefix")
    with Store(str(filled["db"])) as store, pytest.raises(ConfigError, match="ambiguous"):
        resolve(store, shared)


def results_cli() -> click.Group:
    """The `promptopt` group with the result commands (registered by cli.py once wired)."""
    from promptopt.cli import PromptOptGroup, cli
    from promptopt.cli.results import COMMANDS

    if all(c.name in cli.commands for c in COMMANDS):
        return cli
    return PromptOptGroup(name="promptopt", commands={c.name: c for c in COMMANDS if c.name})


def test_cli_leaderboard_and_show(filled: dict[str, object]) -> None:
    result = filled["search"]
    assert isinstance(result, SearchResult)
    db = str(filled["db"])
    runner = CliRunner()
    out = runner.invoke(results_cli(), ["leaderboard", "--db", db, "--json", "--top", "5"])
    assert out.exit_code == 0, out.output
    rows = json.loads(out.output)
    assert len(rows) == 5 and rows[0]["candidate"] == result.winner.hash and rows[0]["dev"]["ci95"]
    table = runner.invoke(results_cli(), ["leaderboard", "--db", db, "--run", result.run_id])
    assert table.exit_code == 0 and result.winner.hash[:10] in table.output and "95% CI" in table.output
    shown = runner.invoke(results_cli(), ["show", result.winner.hash[:8], "--db", db, "--examples", "3"])
    assert shown.exit_code == 0, shown.output
    assert "── system" in shown.output and "per-example results (3 of" in shown.output
    missing = runner.invoke(results_cli(), ["show", "nothing-like-it", "--db", db])
    assert missing.exit_code == 2 and "no run or candidate" in missing.output
