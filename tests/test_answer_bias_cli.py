"""Issue #28 from the outside: `eval --permute/--calibration`, a search over the
answer-bias space, dimensions not offered where they cannot work, answers beside gold."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from click.testing import CliRunner

from promptopt.backends import FakeBackend
from promptopt.bias.space import offer_bias_dimensions
from promptopt.cli import cli
from promptopt.controller import SearchConfig, SearchResult, estimate, search
from promptopt.spaces import load_space
from promptopt.tasks import Task, get_task
from promptopt.types import Candidate
from tests.test_answer_bias import biased_reply, biased_scores, mc_task


class NoScores(FakeBackend):
    def can_score_labels(self) -> bool:
        return False


def test_calibration_is_not_offered_where_it_cannot_work(data_dir: Path) -> None:
    space = load_space("answer-bias")
    mc = get_task("bbh:snarks", data_dir)
    assert offer_bias_dimensions(space, mc, FakeBackend())["calibration"].choices == (
        "none", "contextual", "batch", "position",
    )  # fmt: skip
    assert offer_bias_dimensions(space, mc, NoScores())["calibration"].choices == ("none",)
    yes_no = get_task("bbh:sports_understanding", data_dir)
    assert "position" not in offer_bias_dimensions(space, yes_no, FakeBackend())["calibration"].choices
    assert offer_bias_dimensions(space, yes_no, FakeBackend())["permute"].choices == (
        1,
    )  # no options to reorder
    assert offer_bias_dimensions(space, mc, FakeBackend())["permute"].choices == (1, 3)
    free = get_task("gsm-symbolic")
    assert offer_bias_dimensions(space, free, FakeBackend())["calibration"].choices == ("none",)


def test_eval_options_and_the_answers_beside_gold(data_dir: Path, tmp_path: Path) -> None:
    db = f"sqlite:///{tmp_path / 'cli.db'}"
    runner = CliRunner()
    base = ["eval", "--task", "bbh:snarks", "--data-dir", str(data_dir), "--model", "fake", "--split", "test",
            "--limit", "6", "--db", db, "--no-progress", "--json"]  # fmt: skip
    permuted = runner.invoke(cli, [*base, "--permute", "3"])
    assert permuted.exit_code == 0, permuted.output
    shown = runner.invoke(cli, ["show", json.loads(permuted.output)["run_id"], "--db", db])
    assert shown.exit_code == 0 and "permute 3" in shown.output, shown.output
    calibrated = runner.invoke(cli, [*base, "--calibration", "batch"])
    assert calibrated.exit_code == 0, calibrated.output
    bad = runner.invoke(cli, [*base, "--calibration", "batch", "--cot", "Think."])
    assert bad.exit_code != 0 and "cannot be combined with cot_mode" in bad.output
    shown = runner.invoke(cli, ["show", json.loads(calibrated.output)["run_id"], "--db", db])
    assert shown.exit_code == 0 and "calibration batch" in shown.output, shown.output
    assert "gold    " in shown.output
    both = runner.invoke(cli, [*base, "--permute", "2", "--calibration", "raw"])
    assert both.exit_code == 0, both.output
    counts = json.loads(both.output)  # a scoring call per ordering of the 2 options, the original cached
    assert (counts["calls"], counts["cache_hits"]) == (6, 6), counts
    shown = runner.invoke(cli, ["show", json.loads(both.output)["run_id"], "--db", db])
    assert "permute 2, calibration raw" in shown.output, shown.output


def _mc_search(space: str, **options: Any) -> tuple[Task, SearchConfig]:
    """A search config on a 24-item multiple-choice task, from an instruction of its own."""
    task = mc_task(n_items=24)
    base = Candidate(instruction="Pick the right option.", answer_format=task.spec.answer_format)
    settings = {"policy": "random", "n_proposals": 6, "rounds": 1, "seed": 1, **options}
    config = SearchConfig.from_preset(
        "light", task="records", model="fake", base=base, space=space, dev_size=8, test_size=8, race_start=4,
        **settings,
    )  # fmt: skip
    return task, config


def test_a_search_over_the_answer_bias_space(tmp_path: Path) -> None:
    task, config = _mc_search("answer-bias")
    _, plain_space = _mc_search("default")
    assert estimate(config, task)["search_calls"] > estimate(plain_space, task)["search_calls"]
    backend = FakeBackend(biased_reply, scorer=biased_scores)
    result = search(config, task=task, backend=backend, db=f"sqlite:///{tmp_path / 's.db'}")
    assert isinstance(result, SearchResult)
    picked = {(row.candidate.permute, row.candidate.calibration) for row in result.leaderboard}
    assert len(picked) > 1  # the strategies were searched
    assert any(r.score_labels for r in backend.history)


def test_the_answer_bias_only_space_keeps_the_prompt_and_finds_a_correction(tmp_path: Path) -> None:
    task, config = _mc_search("answer-bias-only", policy="tpe", n_proposals=4, rounds=3, seed=0)
    backend = FakeBackend(biased_reply, scorer=biased_scores)
    result = search(config, task=task, backend=backend, db=f"sqlite:///{tmp_path / 's.db'}")
    assert isinstance(result, SearchResult)
    assert {row.candidate.instruction for row in result.leaderboard} == {"Pick the right option."}
    assert {(row.candidate.demo_ids, row.candidate.cot_mode) for row in result.leaderboard} == {((), "none")}
    plain = (1, "none")  # answers (A) on every item
    assert (result.winner.permute, result.winner.calibration) != plain
    assert result.test["winner"]["accuracy"] > result.test["baseline"]["accuracy"]


def test_eval_bar_steps_by_every_request_an_item_makes(data_dir: Path, tmp_path: Path, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    """`eval --permute 3` shows an item done after its orderings (2 on snarks' 2 options), not
    after its first."""
    from promptopt.progress import EvalProgressBar

    steps: list[int] = []
    start = EvalProgressBar.start
    monkeypatch.setattr(
        EvalProgressBar, "start", lambda self, total, per=1: (steps.append(per), start(self, total, per))
    )
    base = ["eval", "--task", "bbh:snarks", "--data-dir", str(data_dir), "--model", "fake", "--split", "test",
            "--limit", "4", "--db", f"sqlite:///{tmp_path / 'bar.db'}"]  # fmt: skip
    for extra in (["--permute", "3"], ["--permute", "3", "--calibration", "raw"], ["--samples", "2"]):
        result = CliRunner().invoke(cli, [*base, *extra])
        assert result.exit_code == 0, result.output
    assert steps == [2, 2, 2]


def test_the_search_names_the_winners_strategy(data_dir: Path, tmp_path: Path) -> None:
    """An answer-bias-only winner keeps the prompt (no instruction) and differs by its
    strategy: the winner line says which, not an empty instruction ''."""
    result = CliRunner().invoke(cli, ["search", "--task", "bbh:snarks", "--data-dir", str(data_dir), "--policy", "tpe",
                                      "--space", "answer-bias-only", "--model", "fake", "--max-calls", "150",
                                      "--db", f"sqlite:///{tmp_path / 's.db'}", "--no-progress"])  # fmt: skip
    assert result.exit_code == 0, result.output
    line = next(x for x in result.output.splitlines() if x.startswith("winner      ") and ": " in x)
    assert ": ''" not in line and "(no instruction)" in line and ("calibration" in line or "permute" in line)
