"""The rg:<dataset> family: reasoning-gym's procedural datasets, scored by their own scorer."""

from __future__ import annotations

import pytest
from click.testing import CliRunner

import promptopt
from promptopt.backends import FakeBackend
from promptopt.cli import cli
from promptopt.metrics.rg import extract_answer_tag
from promptopt.tasks import get_task

pytest.importorskip("reasoning_gym")


def test_the_family_is_listed() -> None:
    result = CliRunner().invoke(cli, ["tasks"])
    assert result.exit_code == 0
    names = [line.split()[0] for line in result.stdout.splitlines() if line.startswith("rg:")]
    assert len(names) >= 100 and "rg:leg_counting" in names and "rg:spell_backward" in names


def test_a_misspelt_dataset_is_a_clear_error_with_the_closest_names() -> None:
    result = CliRunner().invoke(
        cli, ["eval", "--task", "rg:basic_arithmetc", "--model", "fake", "--limit", "2"]
    )
    assert result.exit_code != 0 and "Traceback" not in result.output
    assert "reasoning-gym has no dataset 'basic_arithmetc'" in result.output
    assert "rg:basic_arithmetic" in result.output


def test_answer_tag_extraction() -> None:
    assert extract_answer_tag("so <answer>A</answer> no <answer> Foo Bar </answer>") == "Foo Bar"
    assert extract_answer_tag("thinking <answer>42") == "42"
    assert extract_answer_tag("The final answer is: Mesogyrate.") == "Mesogyrate"
    assert extract_answer_tag("nothing") is None


def test_items_are_scored_by_the_datasets_own_scorer_with_partial_credit() -> None:
    task = get_task("rg:spell_backward")
    assert task.metric.name == "rg_score" and task.extractor_name == "answer_tag"
    train = {e.inputs["question"] for e in task.examples("train") + task.examples("dev")}
    test = task.examples("test")
    assert test and not train & {e.inputs["question"] for e in test}  # splits share no item
    example = test[3]
    right, close, none = task.score_predictions([
        (example, task.predict(f"Reversed: <answer>{example.target}</answer>")),
        (example, task.predict(f"<answer>{example.target[:-1]}#</answer>")),
        (example, task.predict("I cannot do that.")),
    ])  # fmt: skip
    assert right.score == 1.0
    assert 0 < close.score < 1 and close.feedback.startswith("partial credit")  # type: ignore[operator]
    assert none.score == 0.0 and "no answer found" in none.feedback


def test_an_rg_task_evaluates_end_to_end(db_url: str) -> None:
    task = get_task("rg:leg_counting")
    answers = {e.inputs["question"]: e.target for e in task.examples("test")}

    def respond(request):  # type: ignore[no-untyped-def]
        question = request.messages[-1].content
        known = next((a for q, a in answers.items() if q in question), None)
        return (
            f"Counting... <answer>{known}</answer>" if known and len(question) % 2 else "<answer>7</answer>"
        )

    report = promptopt.evaluate(
        task, "Count carefully.", FakeBackend(respond), split="test", limit=20, db=db_url
    )
    assert report.n == 20 and 0 < report.accuracy < 1
    assert report.summary()["metric"] == "rg_score"
    assert any(r.feedback and "expected" in r.feedback for r in report.results)
