"""``--shots N --cot`` on a task whose train items carry no worked solutions (issue #27,
point 4): N demos, answer-only, and the trigger kept after the question, said on the terminal."""

from __future__ import annotations

import json
from pathlib import Path

from click.testing import CliRunner

from promptopt.backends.fake import FakeBackend
from promptopt.cli import cli
from promptopt.evaluation import cot_demo_note, evaluate, make_candidate
from promptopt.prompt import render_messages
from promptopt.tasks import get_task

TRIGGER = "Let's think step by step."


def _folder(tmp_path: Path, with_prompt: bool) -> Path:
    (tmp_path / "bbh").mkdir()
    rows = [
        {"input": f"Is argument {i} valid or invalid?", "target": ["valid", "invalid"][i % 2]}
        for i in range(100)
    ]
    (tmp_path / "bbh" / "formal_fallacies.json").write_text(json.dumps({"examples": rows}), encoding="utf-8")
    if with_prompt:
        (tmp_path / "bbh" / "formal_fallacies.cot-prompt.txt").write_text(
            "Decide.\n\nQ: Is argument X valid?\nA: Let's think step by step.\nIt follows. So the answer is valid.\n",
            encoding="utf-8",
        )
    return tmp_path


def test_answer_only_demos_keep_the_trigger(tmp_path: Path, db_url: str) -> None:
    task = get_task("bbh:formal_fallacies", _folder(tmp_path, with_prompt=False))
    candidate = make_candidate(task, cot=TRIGGER, shots=3)
    assert candidate.cot_mode == "few_shot" and len(candidate.demo_ids) == 3
    messages = render_messages(candidate, task, task.examples("test")[0])
    assert messages[-1].content.endswith(TRIGGER)  # the trigger is not dropped
    assert [m.content for m in messages[1:-1:2]] == [
        "The answer is " + task.demo(d).target + "." for d in candidate.demo_ids
    ]
    note = cot_demo_note(task, candidate, 3)
    assert note and "3 of the 3 demos carry no worked solution" in note and "follows the question" in note
    backend = FakeBackend()
    evaluate(task, candidate, backend, split="test", limit=2, db=db_url)
    assert backend.history[0].messages[-1].content.endswith(TRIGGER)


def test_worked_demos_first_then_answer_only_and_said_on_the_terminal(tmp_path: Path, db_url: str) -> None:
    folder = _folder(tmp_path, with_prompt=True)
    task = get_task("bbh:formal_fallacies", folder)
    candidate = make_candidate(task, cot=TRIGGER, shots=3)
    assert candidate.demo_ids[0] == "cot-0" and len(candidate.demo_ids) == 3  # not cut to the 1 worked demo
    messages = render_messages(candidate, task, task.examples("test")[0])
    assert not messages[-1].content.endswith(TRIGGER)  # a worked demo shows the reasoning
    result = CliRunner().invoke(cli, ["eval", "--task", "bbh:formal_fallacies", "--data-dir", str(folder), "--model",
                                      "fake", "--shots", "3", "--cot", TRIGGER, "--limit", "2", "--db", db_url])  # fmt: skip
    assert result.exit_code == 0, result.output
    assert "note: 2 of the 3 demos carry no worked solution and show their answer only" in result.stderr
