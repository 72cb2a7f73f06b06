"""Issue #24, hardening: what a new user or a security reviewer meets at the edges — tiny
budgets, failing endpoints, odd bytes in data files, markup and escape codes in model text,
bad numbers on the command line, broken task files, resume of a live run."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner

from promptopt.cli import cli

FAST = ["--task", "gsm-symbolic", "--model", "fake", "--dev-size", "6", "--test-size", "6", "--proposals", "2",
        "--rounds", "1", "--no-progress"]  # fmt: skip


def _invoke(args: list[str]) -> tuple[int, str, str]:
    result = CliRunner().invoke(cli, args)
    if result.exception and not isinstance(result.exception, SystemExit):
        raise result.exception
    return result.exit_code, result.stdout, result.stderr


# ----------------------------------------------------------------------------- 2. small budgets


@pytest.mark.parametrize(
    "budget", [["--max-calls", "1"], ["--max-tokens", "500"], ["--max-minutes", "0"],
               ["--max-cost", "0"]],
)  # fmt: skip
def test_a_budget_too_small_to_score_anything_ends_with_the_starting_prompt(
    budget: list[str], tmp_path: Path
) -> None:
    code, out, err = _invoke(["search", *FAST, *budget, "--db", f"sqlite:///{tmp_path / 'b.db'}", "--json"])
    assert code == 0, err
    result = json.loads(out)
    assert result["winner"] == result["baseline"]
    assert "before any prompt was scored" in result["stopped_reason"]
    assert result["test"]["n"] == 6


def test_every_call_budget_from_one_up_ends_cleanly(tmp_path: Path) -> None:
    # Every budget between "nothing scored" and "the whole search" (the search needs ~60).
    db = f"sqlite:///{tmp_path / 'b.db'}"
    winners: list[int] = []
    for calls in range(1, 70, 3):
        code, out, err = _invoke(["search", *FAST, "--max-calls", str(calls), "--db", db, "--json"])
        assert code == 0, (calls, err)
        result = json.loads(out)
        assert result["test"]["n"] == 6 and result["winner"] in {
            r["candidate"] for r in result["leaderboard"]
        }
        winners.append(len(result["leaderboard"]))
    assert winners[0] == 1 and max(winners) > 1, (
        "the smallest budget scores the starting prompt only, larger ones search"
    )
