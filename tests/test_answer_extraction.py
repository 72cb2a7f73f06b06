"""Extraction of what small models really write on tasks promptopt was not tuned on
(issue #27, point 3): a label extractor for small closed answer sets, unwrapped LaTeX and
Markdown, option letters in every spelling and the option's text mapped back to its letter,
and no answer read from the last line of an output cut off at the token limit."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from promptopt.backends.fake import FakeBackend
from promptopt.evaluation import evaluate
from promptopt.tasks import get_task
from promptopt.tasks.extract import detect_extractor, extract_answer, extract_number, make_label_extractor
from promptopt.tasks.options import label_set, parse_options
from promptopt.types import Candidate, Completion

CORPUS = Path(__file__).parent / "fixtures" / "extraction_corpus.jsonl"


def corpus() -> list[dict]:
    return [json.loads(line) for line in CORPUS.read_text(encoding="utf-8").splitlines() if line.strip()]


@pytest.mark.parametrize("row", corpus(), ids=lambda row: f"{row['task']}:{row['note']}")
def test_extraction_corpus(row: dict) -> None:
    answer = extract_answer(
        row["extractor"],
        row["output"],
        labels=row["labels"] or (),
        options=parse_options(row["input"]) if row["input"] else None,
        truncated=row["finish_reason"] == "length",
    )
    assert answer == row["expected"], row["note"]


def test_unicode_minus() -> None:
    assert extract_number("The answer is \u22123.") == "-3"


@given(st.lists(st.sampled_from(["valid", "invalid", "maybe"]), min_size=1, max_size=3), st.text(max_size=80))
def test_label_extractor_only_returns_a_label(labels: list[str], text: str) -> None:
    answer = make_label_extractor(labels)(text)
    assert answer is None or answer in {label.lower() for label in labels}


def test_small_closed_answer_sets_get_a_label_extractor() -> None:
    assert detect_extractor(["valid", "invalid"] * 20) == "labels"
    assert detect_extractor([f"free answer {i}" for i in range(40)]) == "text"
    assert label_set(["a", "b", "c"]) is None  # each seen once: not a closed set


def test_a_few_golds_that_are_no_letter_leave_a_task_multiple_choice() -> None:
    letters = ["(A)", "(B)", "(C)", "(D)"] * 10
    assert detect_extractor([*letters, "dearth, wind, & fire"]) == "choice"  # 1 of 41
    assert detect_extractor([*letters[:20], "x", "y"]) != "choice"  # 2 of 22: more than 5%


def test_a_multiple_choice_task_with_a_stray_gold_warns_once_and_keeps_it_out_of_its_labels(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    rows = [{"input": f"Which edit of name {i}?\nOptions:\n(A) one\n(B) two", "target": "(A)" if i % 2 else "(B)"}
            for i in range(40)]  # fmt: skip
    rows[7] = {
        "input": "Which edit of 'earth, wind'?\nOptions:\n(A) earth\n(B) wind",
        "target": "dearth, wind",
    }
    folder = _bbh_folder(tmp_path, "ruin_names", rows)
    with caplog.at_level("WARNING", logger="promptopt.tasks.task"):
        task = get_task("bbh:ruin_names", folder)
        assert task.extractor_name == "choice"
        assert get_task("bbh:ruin_names", folder).extractor_name == "choice"
    assert set(task.labels or ()) == {"(A)", "(B)"}
    warned = [r.getMessage() for r in caplog.records if "no option letter" in r.getMessage()]
    assert len(warned) == 1 and "1 of 40" in warned[0] and "'dearth, wind'" in warned[0]
    stray = next(
        e for split in ("train", "dev", "test") for e in task.examples(split) if e.target == "dearth, wind"
    )
    assert task.extract("So the answer is (A).") == "(A)" != task.target(stray)  # never answered right


def _bbh_folder(tmp_path: Path, subtask: str, rows: list[dict]) -> Path:
    (tmp_path / "bbh").mkdir(exist_ok=True)
    (tmp_path / "bbh" / f"{subtask}.json").write_text(json.dumps({"examples": rows}), encoding="utf-8")
    return tmp_path


def test_formal_fallacies_truncated_and_boxed_outputs_are_read_honestly(tmp_path: Path, db_url: str) -> None:
    rows = [{"input": f"Argument {i}. Is it valid or invalid?\nOptions:\n- valid\n- invalid", "target": ["valid", "invalid"][i % 2]}
            for i in range(40)]  # fmt: skip
    folder = _bbh_folder(tmp_path, "formal_fallacies", rows)
    task = get_task("bbh:formal_fallacies", folder)
    assert task.extractor_name == "labels"
    backend = FakeBackend()
    n = len(task.examples("test", limit=4))
    backend.enqueue(
        "The premises say nothing about the converse.\n\\boxed{\\text{invalid}}",
        Completion(text="Premise one reverses the conditional, so the argument is", finish_reason="length"),
        "So the answer is (X).",
        "So the argument is invalid.",
    )
    report = evaluate(task, Candidate(cot_mode="zero_shot", cot_trigger="Think."), backend, split="test",
                      limit=n, db=db_url)  # fmt: skip
    answers = [r.answer for r in report.results]
    assert answers == ["invalid", None, None, "invalid"]
