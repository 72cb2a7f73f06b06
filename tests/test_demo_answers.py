"""A demo states its answer in the form the task's extractor reads: reasoning-gym's tasks
ask for ``<answer>...</answer>`` tags, so their demos end with the tags (they ended with
"The answer is N." under a line asking for tags); a bootstrapped solution loses its own
answer, tags included, before the demo adds it back."""

from __future__ import annotations

from pathlib import Path

import pytest

from promptopt.bootstrap import solution_text
from promptopt.prompt import render_messages
from promptopt.tasks import Task, get_task
from promptopt.types import Candidate

RECORDS = [{"q": f"What is {i} + 1?", "a": str(i + 1)} for i in range(12)]


def _task(extractor: str, tmp_path: Path | None = None, demo_answer: str | None = None) -> Task:
    if demo_answer is None:
        return Task.from_records(RECORDS[:8], test=RECORDS[8:], input_fields=["q"], target_field="a",
                                 extractor=extractor, dev_size=2)  # fmt: skip
    assert tmp_path is not None
    (tmp_path / "a.jsonl").write_text("\n".join(f'{{"q": "{r["q"]}", "a": "{r["a"]}"}}' for r in RECORDS))
    (tmp_path / "t.yaml").write_text(
        "name: t\nsource: {type: records, files: {train: a.jsonl, test: a.jsonl}, target_field: a}\n"
        f"input_fields: [q]\ntemplate: '{{q}}'\nextractor: number\ndemo_answer: '{demo_answer}'\n"
    )
    return get_task(str(tmp_path / "t.yaml"))


def _demo_turns(task: Task, solution: str | None = None) -> list[str]:
    demo = task.demo_pool()[0]
    candidate = Candidate(instruction="", cot_mode="few_shot", demo_ids=(demo.id,),
                          demo_solutions=((demo.id, solution),) if solution else ())  # fmt: skip
    messages = render_messages(candidate, task, task.examples("test")[0])
    return [m.content for m in messages if m.role == "assistant"]


def test_a_demo_answers_in_the_form_its_task_reads(tmp_path: Path) -> None:
    tagged = _task("answer_tag")
    gold = tagged.demo_pool()[0].target
    assert _demo_turns(tagged) == [f"<answer>{gold}</answer>"]
    worked = _demo_turns(tagged, "Add one.")[0]
    assert worked.endswith(f"Add one.\n<answer>{gold}</answer>") and "The answer is" not in worked
    assert tagged.extract(worked) == gold  # what the demo shows is what the task reads
    assert _demo_turns(_task("number")) == [f"The answer is {_task('number').demo_pool()[0].target}."]
    own = _task("number", tmp_path, demo_answer="#### {answer}")
    assert _demo_turns(own) == [f"#### {own.demo_pool()[0].target}"]


def test_reasoning_gym_tasks_demos_use_the_tags() -> None:
    pytest.importorskip("reasoning_gym")
    task = get_task("rg:basic_arithmetic")
    assert task.demo_answer_form == "<answer>{answer}</answer>"


@pytest.mark.parametrize(
    ("output", "lead", "solution"),
    [
        ("2 + 1 = 3.\n\nSo, the final answer is <answer>3</answer>.", "<answer>", "2 + 1 = 3."),
        ("2 + 1 = 3.\nThe answer is 3.", "The answer is ", "2 + 1 = 3."),
        ("x = 3\n#### 3", "", "x = 3"),
        ("2 + 1 = 3, <answer>3</answer>", "<answer>", "2 + 1 = 3,"),
        ("Let me work out the answer\n#### 3", "", "Let me work out the answer"),  # no dangling "is"
        ("The answer is 3.", "The answer is ", ""),  # the answer alone: shown once, by the demo
        ("So the answer is: <answer>3</answer>", "<answer>", ""),
        (
            "The answer is 3, because 1 + 2 = 3.\nThat is all of it.",
            "The answer is ",
            "The answer is 3, because 1 + 2 = 3.\nThat is all of it.",
        ),  # reasoning after it: kept whole
    ],
)
def test_a_bootstrapped_solution_loses_its_own_answer(output: str, lead: str, solution: str) -> None:
    assert solution_text(output, lead) == solution


def test_a_json_task_demo_is_the_object_alone() -> None:
    """Its answer-format line says "Reply with one JSON object and nothing else"."""
    rows = [{"q": f"Item {i}", "a": f'{{"n": {i}}}'} for i in range(10)]
    task = Task.from_records(rows[:6], test=rows[6:], input_fields=["q"], target_field="a", extractor="json",
                             dev_size=2)  # fmt: skip
    turn = _demo_turns(task)[0]
    assert turn == task.demo_pool()[0].target and task.extract(turn) is not None


@pytest.mark.parametrize(
    ("output", "solution"),
    [
        ('Count them: one.\n{"n": 1}', "Count them: one."),
        ('Count them: one.\n```json\n{"n": 1}\n```', "Count them: one."),
        ('{"n": 1}', ""),  # nothing before it: an answer-only demo
    ],
)
def test_a_bootstrapped_json_solution_ends_before_its_own_object(output: str, solution: str) -> None:
    """The demo adds the gold object after the solution: the model's own must not stay."""
    from promptopt.backends.fake import FakeBackend
    from promptopt.bootstrap import bootstrap_demos

    rows = [{"q": f"Item {i}", "a": '{"n": 1}'} for i in range(10)]
    task = Task.from_records(rows[:8], test=rows[8:], input_fields=["q"], target_field="a", extractor="json",
                             dev_size=2)  # fmt: skip
    report = bootstrap_demos(task, FakeBackend(lambda request: output), k=1)
    assert report.correct == 1 and report.demos.solutions[0][1] == solution
