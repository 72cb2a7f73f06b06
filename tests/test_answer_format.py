"""The answer-format line built from the task (issue #27, point 1): no placeholder a
model can copy, but what an answer to this item may be."""

from __future__ import annotations

import json
from pathlib import Path

from promptopt.backends.fake import FakeBackend
from promptopt.evaluation import evaluate, make_candidate
from promptopt.prompt import render_messages
from promptopt.tasks import get_task
from promptopt.types import GenerationRequest

GEO_OPTIONS = "\nOptions:\n(A) circle\n(B) heptagon\n(C) hexagon\n(D) kite\n(E) line\n(F) octagon\n(G) pentagon\n(H) rectangle\n(I) sector\n(J) triangle"


def _bbh(tmp_path: Path, subtask: str, rows: list[dict]) -> Path:
    (tmp_path / "bbh").mkdir(exist_ok=True)
    (tmp_path / "bbh" / f"{subtask}.json").write_text(json.dumps({"examples": rows}), encoding="utf-8")
    return tmp_path


def _last_line(task_name: str, folder: Path, **options: object) -> str:
    task = get_task(task_name, folder)
    candidate = make_candidate(task, **options)  # type: ignore[arg-type]
    return render_messages(candidate, task, task.examples("test")[0])[-1].content.splitlines()[-1]


def test_choice_line_names_the_items_own_letters(tmp_path: Path) -> None:
    letters = "ABCDEFGHIJ"
    rows = [{"input": f"Path {i} draws a{GEO_OPTIONS}", "target": f"({letters[i % 10]})"} for i in range(60)]
    line = _last_line("bbh:geometric_shapes", _bbh(tmp_path, "geometric_shapes", rows))
    assert "(A), (B), (C), (D), (E), (F), (G), (H), (I) or (J)" in line
    assert " X" not in line and "(K)" not in line


def test_two_way_numeric_and_user_lines(tmp_path: Path) -> None:
    ff = [
        {"input": f"Argument {i}: valid or invalid?", "target": ["valid", "invalid"][i % 2]}
        for i in range(40)
    ]
    folder = _bbh(tmp_path, "formal_fallacies", ff)
    assert _last_line("bbh:formal_fallacies", folder).endswith("followed by valid or invalid.")
    yn = [{"input": f"Is sentence {i} plausible?", "target": ["yes", "no"][i % 2]} for i in range(40)]
    assert _last_line("bbh:sports_understanding", _bbh(tmp_path, "sports_understanding", yn)).endswith(
        "yes or no."
    )
    count = [{"input": f"How many {i}?", "target": str(i % 7)} for i in range(40)]
    assert _last_line("bbh:object_counting", _bbh(tmp_path, "object_counting", count)).endswith("a number.")
    # a user's own answer-format line wins, as written
    assert (
        _last_line("bbh:formal_fallacies", folder, answer_format="Reply with one word.")
        == "Reply with one word."
    )


def test_a_model_that_copies_the_placeholder_has_nothing_to_copy(tmp_path: Path, db_url: str) -> None:
    """A scripted small model that ends with whatever the format line shows after
    "So the answer is": with the old line it wrote "(X)" on every item."""
    letters = "ABCDEFGHIJ"
    rows = [{"input": f"Path {i} draws a{GEO_OPTIONS}", "target": "(J)"} for i in range(60)]
    task = get_task("bbh:geometric_shapes", _bbh(tmp_path, "geometric_shapes", rows))

    def copier(request: GenerationRequest) -> str:
        line = request.messages[-1].content.splitlines()[-1]
        shown = line.split("So the answer is", 1)[1].strip(' ".').split(",")[-1].split(" or ")[-1]
        return f"Three sides. So the answer is {shown if shown != 'X' else '(X)'}."

    report = evaluate(task, make_candidate(task), FakeBackend(copier), split="test", limit=10, db=db_url)
    assert all(r.answer in {f"({x})" for x in letters} for r in report.results)
    assert report.accuracy == 1.0
