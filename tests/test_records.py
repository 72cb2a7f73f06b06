"""Task.from_records: tasks from lists of dicts or pandas DataFrames."""

from __future__ import annotations

import pytest

import promptopt
from promptopt.errors import DataError, TaskError


def rows(n: int) -> list[dict[str, object]]:
    return [{"id": f"r{i}", "text": f"item {i}", "label": "even" if i % 2 == 0 else "odd"} for i in range(n)]


def test_lists_of_dicts_with_given_splits() -> None:
    task = promptopt.Task.from_records(train=rows(10), dev=rows(4), test=rows(6), input_fields=["text"],
                                       target_field="label", id_field="id", instruction="Parity?")  # fmt: skip
    assert [len(task.examples(s)) for s in ("train", "dev", "test")] == [10, 4, 6]
    assert task.examples("dev")[0].id == "r0" and task.spec.instruction == "Parity?"
    assert task.render_input(task.examples("test")[1]) == "text: item 1"
    assert task.metric.name == "exact_match"


def test_a_dataframe_and_the_default_dev_and_test() -> None:
    pandas = pytest.importorskip("pandas")
    frame = pandas.DataFrame(rows(40))
    task = promptopt.Task.from_records(train=frame, input_fields=["text"], target_field="label", dev_size=8)
    sizes = {s: len(task.examples(s)) for s in ("train", "dev", "test")}
    assert sizes == {"train": 12, "dev": 8, "test": 20}  # half held out as test, dev drawn from the rest
    again = promptopt.Task.from_records(train=frame, input_fields=["text"], target_field="label", dev_size=8)
    assert again.dataset_hash == task.dataset_hash  # seeded


def test_json_targets_are_json_text() -> None:
    data = [{"text": "a", "fields": {"x": 1}}, {"text": "b", "fields": {"x": 2}}]
    task = promptopt.Task.from_records(train=data, test=data, input_fields=["text"], target_field="fields",
                                       extractor="json", metric="json_fields")  # fmt: skip
    assert task.examples("test")[0].target == '{"x": 1}'
    assert task.spec.answer_format == "Reply with one JSON object and nothing else."


@pytest.mark.parametrize(
    ("kwargs", "error", "message"),
    [
        ({"train": [{"text": "a"}]}, DataError, "missing field(s) label"),
        ({"train": {"text": "a"}}, DataError, "expected a list of dicts"),
        ({"train": rows(4), "input_fields": []}, TaskError, "non-empty list"),
        ({"train": rows(4), "template": "{nope}"}, Exception, "nope"),
        ({"train": rows(4), "metric": "tokenf1"}, Exception, "did you mean token_f1"),
    ],
)
def test_bad_records_are_clear_errors(kwargs: dict[str, object], error: type, message: str) -> None:
    options = {"input_fields": ["text"], "target_field": "label", **kwargs}
    with pytest.raises(error, match=message.replace("(", r"\(").replace(")", r"\)")):
        promptopt.Task.from_records(**options).examples("train")  # type: ignore[arg-type]
