"""A constant baseline beside every score, the model's answer distribution, and a search
winner's dev and test side by side (issue #27, points 7 and 8)."""

from __future__ import annotations

import contextlib
import io
import json
from pathlib import Path

from click.testing import CliRunner

from promptopt.backends.fake import FakeBackend
from promptopt.cli import cli
from promptopt.cli.answers import print_winner_checks
from promptopt.controller import SearchConfig, search
from promptopt.evaluation import make_candidate
from promptopt.tasks import get_task
from promptopt.types import GenerationRequest

SNARK = "Which statement is sarcastic? (item {i})\nOptions:\n(A) He is generous\n(B) He is terrible"


def _snarks(tmp_path: Path, n: int = 178) -> Path:
    (tmp_path / "bbh").mkdir()
    # (B) is right on two items in three, as on bbh:snarks where always (B) beat the model
    rows = [{"input": SNARK.format(i=i), "target": "(A)" if i % 3 == 0 else "(B)"} for i in range(n)]
    (tmp_path / "bbh" / "snarks.json").write_text(json.dumps({"examples": rows}), encoding="utf-8")
    return tmp_path


def run(*args: str) -> tuple[int, str, str]:
    result = CliRunner().invoke(cli, list(args))
    return result.exit_code, result.stdout, result.stderr


def test_eval_shows_the_constant_baseline_and_the_answer_distribution(tmp_path: Path, db_url: str) -> None:
    folder = _snarks(tmp_path)
    # a scripted model that answers (A) on 9 items in 10: the bbh:snarks failure
    script = ["So the answer is (A)."] * 9 + ["So the answer is (B)."]
    common = ("--task", "bbh:snarks", "--data-dir", str(folder), "--db", db_url, "--limit", "30")
    from promptopt.evaluation import evaluate

    backend = FakeBackend(lambda r: script[len(backend.history) % 10])
    report = evaluate(get_task("bbh:snarks", folder), "", backend, split="test", limit=30, db=db_url)
    constant = report.summary()["constant_baseline"]
    assert constant["answer"] == "(B)" and constant["chosen_on"] == "train"
    assert constant["test"]["n"] == 30 and constant["test"]["accuracy"] > report.accuracy
    code, out, _ = run("show", report.run_id, *common[4:6], "--data-dir", str(folder))
    assert code == 0 and "answers (A) 27 · (B) 3" in out
    assert "constant baseline: always (B)" in out
    code, out, _ = run("leaderboard", "--db", db_url)
    assert "constant baseline · bbh:snarks: always (B): test" in out
    code, out, _ = run("eval", *common, "--model", "fake")
    assert "constant    always (B):" in out and "on the same 30 test items" in out
    assert "this prompt does NOT beat it" in out


def test_search_puts_dev_and_test_side_by_side_and_warns(tmp_path: Path, db_url: str) -> None:
    """A candidate that is right on dev and wrong on test wins on dev; the summary must
    show its test beside its dev, warn that it is below the starting prompt, and say it
    does not beat always answering (B)."""
    folder = _snarks(tmp_path)
    task = get_task("bbh:snarks", folder)
    gold = {task.render_input(e): e.target for split in ("dev", "test") for e in task.examples(split)}
    test_inputs = {task.render_input(e) for e in task.examples("test")}

    def model(request: GenerationRequest) -> str:
        last = request.messages[-1].content
        if "End your answer" not in last:
            return "Decide which statement is sarcastic."  # the proposer's requests
        question = last.split("\n\nEnd your answer")[0]
        right = gold[question]
        wrong = "(A)" if right == "(B)" else "(B)"
        if request.messages[0].role == "system":  # a proposal: right on dev, wrong on test
            return f"So the answer is {wrong if question in test_inputs else right}."
        # the starting prompt: always (A) on dev, right on test
        return f"So the answer is {right if question in test_inputs else '(A)'}."

    config = SearchConfig.from_preset("light", task="bbh:snarks", model="fake", data_dir=str(folder),
                                      base=make_candidate(task), dev_size=20, test_size=20, n_proposals=2,
                                      rounds=0)  # fmt: skip
    result = search(config, backend=FakeBackend(model), db=db_url, task=task)
    summary = result.summary()
    sides = summary["winner_dev_test"]
    assert sides["dev"] == {"accuracy": 1.0, "n": 20}
    assert sides["test"]["accuracy"] == 0.0 and sides["starting_prompt_test"] == 1.0
    assert sides["test_below_starting_prompt"] is True
    assert summary["constant_baseline"]["answer"] == "(B)"
    buffer = io.StringIO()
    with contextlib.redirect_stdout(buffer):
        print_winner_checks(result)
    printed = buffer.getvalue()
    assert "dev 100.0% (n=20)  |  test 0.0% (n=20)  |  starting prompt test 100.0%" in printed
    assert "BELOW the starting prompt on test" in printed
    assert "the winner does NOT beat it" in printed
    code, out, _ = run("show", result.run_id, "--db", db_url, "--data-dir", str(folder))
    assert code == 0 and "winner: dev 100.0% (n=20) | test 0.0% (n=20)" in out
    assert "warning: the winner scores below the starting prompt on test" in out


def test_no_constant_line_on_zero_scored_items() -> None:
    """Every request failed: "always negative: 0.0% on the same 0 test items; this prompt
    does NOT beat it" compared nothing with nothing; no line is printed."""
    from promptopt.constant import constant_line

    constant = {"answer": "negative", "chosen_on": "train", "test": {"accuracy": 0.0, "n": 0}}
    assert constant_line(constant, None, "test", "this prompt") is None
    constant["test"] = {"accuracy": 0.5, "n": 4}
    assert constant_line(constant, 0.25, "test", "this prompt") == (
        "always negative: 50.0% on the same 4 test items (the most common answer of train); this prompt does NOT beat it"
    )
