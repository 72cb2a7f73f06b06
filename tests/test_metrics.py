"""The metric interface, the built-in metrics, references and the json extractor."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from promptopt.errors import MetricError, TaskError
from promptopt.metrics import MetricResult, Prediction, resolve_metric
from promptopt.metrics.jsonout import find_json, predict_json
from promptopt.tasks.task import Task, TaskSpec
from promptopt.types import Example


def ex(target: str, id: str = "q1") -> Example:
    return Example(id=id, inputs={"q": "?"}, target=target)


def pred(answer: str | None, raw: str | None = None, parsed: object = None) -> Prediction:
    return Prediction(raw if raw is not None else (answer or ""), answer, parsed)


def score(spec: object, target: str, answer: str | None, **kw: object) -> MetricResult:
    return resolve_metric(spec).score(ex(target), pred(answer, **kw))  # type: ignore[arg-type]


# ---------------------------------------------------------------- validation


@pytest.mark.parametrize("bad", [1.5, -0.1, float("nan"), "0.5", None, [1]])
def test_a_score_outside_0_1_or_of_the_wrong_type_is_one_clear_error(bad: object) -> None:
    metric = resolve_metric(lambda e, p: bad)
    with pytest.raises(MetricError) as info:
        metric.score(ex("x", id="item-7"), pred("x"))
    message = str(info.value)
    assert "item-7" in message and "\n" not in message.split("hint")[0].strip()


def test_bools_and_metric_results_are_accepted() -> None:
    assert resolve_metric(lambda e, p: True).score(ex("x"), pred("x")) == MetricResult(1.0, "")
    got = resolve_metric(lambda e, p: MetricResult(0.25, "a quarter")).score(ex("x"), pred("x"))
    assert got == MetricResult(0.25, "a quarter")


def test_unknown_metric_name_suggests_the_closest() -> None:
    with pytest.raises(MetricError) as info:
        resolve_metric("exact_mach")
    assert "did you mean exact_match" in str(info.value)


def test_a_metric_that_raises_names_the_example_and_the_exception() -> None:
    def broken(example: Example, prediction: Prediction) -> float:
        return 1 / 0

    with pytest.raises(MetricError) as info:
        resolve_metric(broken).score(ex("x", id="train-00042"), pred("x"))
    assert "train-00042" in str(info.value) and "ZeroDivisionError" in str(info.value)


def test_an_unimportable_reference_is_one_clear_error(tmp_path: Path) -> None:
    with pytest.raises(MetricError, match="cannot import module 'no_such_module_xyz'"):
        resolve_metric("no_such_module_xyz:fn")
    with pytest.raises(MetricError, match="not found"):
        resolve_metric(str(tmp_path / "missing.py") + ":fn")
    (tmp_path / "m.py").write_text("def my_metric(example, prediction):\n    return 1.0\n")
    with pytest.raises(MetricError, match="did you mean my_metric"):
        resolve_metric(f"{tmp_path / 'm.py'}:my_metrc")


def test_references_load_from_a_file_and_a_module(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    code = "def half(example, prediction):\n    return 0.5 if prediction.answer else 0.0\n"
    (tmp_path / "mymetrics.py").write_text(code)
    metric = resolve_metric(f"{tmp_path / 'mymetrics.py'}:half")
    assert metric.user_code and metric.spec == f"{tmp_path / 'mymetrics.py'}:half"
    assert metric.score(ex("x"), pred("y")).score == 0.5
    monkeypatch.syspath_prepend(str(tmp_path))
    assert resolve_metric("mymetrics:half").score(ex("x"), pred(None)).score == 0.0


def test_a_callable_keeps_its_reference_only_when_it_can_be_imported_again() -> None:
    from promptopt.metrics.builtin import f1

    assert resolve_metric(f1).spec == "promptopt.metrics.builtin:f1"  # type: ignore[arg-type]
    lam = resolve_metric(lambda e, p: 1.0)
    assert not lam.resumable and "lambda" in lam.why_not_resumable

    def make() -> object:
        def inner(e: Example, p: Prediction) -> float:
            return 1.0

        return inner

    closure = resolve_metric(make())
    assert not closure.resumable and "closure" in closure.why_not_resumable


# ---------------------------------------------------------------- built-ins


def test_exact_match() -> None:
    assert score("exact_match", "42", "42").score == 1.0
    wrong = score("exact_match", "42", "41")
    assert wrong.score == 0.0 and wrong.feedback == "expected 42, got 41"
    assert score("exact_match", "42", None).feedback == "no answer found in the output"


def test_numeric_with_tolerance() -> None:
    assert score({"numeric": {"tolerance": 0.5}}, "10", "10.4").score == 1.0
    off = score({"numeric": {"tolerance": 0.5}}, "10", "11")
    assert off.score == 0.0 and "expected 10, got 11" in off.feedback
    assert score({"numeric": {"relative": 0.1}}, "100", "$109").score == 1.0
    with pytest.raises(MetricError, match="unknown option"):
        resolve_metric({"numeric": {"tolerence": 1}})


def test_choice_over_a_label_set() -> None:
    labels = {"choice": {"labels": ["positive", "negative", "neutral"]}}
    assert score(labels, "positive", "Positive.").score == 1.0
    assert score(labels, "positive", "the sentiment is positive").score == 1.0
    outside = score(labels, "positive", "great")
    assert outside.score == 0.0 and "not one of the labels" in outside.feedback
    assert "expected label negative, got positive" in score(labels, "negative", "positive").feedback


def test_contains_token_f1_and_regex() -> None:
    assert score("contains", "Paris", None, raw="It is paris, of course").score == 1.0
    assert "does not contain Paris" in score("contains", "Paris", None, raw="Lyon").feedback
    partial = score("token_f1", "the quick brown fox", "quick brown dog")
    assert 0 < partial.score < 1 and "missing" in partial.feedback and "extra dog" in partial.feedback  # type: ignore[operator]
    assert score({"regex": {"pattern": r"^\d{3}-\d{4}$", "field": "answer"}}, "", "555-1234").score == 1.0
    assert score({"regex": {"pattern": "answer: {target}"}}, "a+b", None, raw="Answer: a+b").score == 1.0


def test_json_fields_scores_each_field_with_feedback() -> None:
    gold = json.dumps({"name": "Ada Lovelace", "year": 1815, "city": "London"})
    got = {"name": "ada lovelace", "year": 1816}
    result = score("json_fields", gold, json.dumps(got), parsed=got)
    assert result.score == pytest.approx(1 / 3)
    assert "field `year`: expected 1815, got 1816" in result.feedback
    assert "field `city` missing" in result.feedback
    f1 = score({"json_fields": {"mode": "f1", "fields": ["name"]}}, gold, "x", parsed={"name": "Ada"})
    assert f1.score == pytest.approx(2 / 3)


# ---------------------------------------------------------------- json extractor


def test_json_is_found_fenced_or_bare() -> None:
    assert find_json('Sure!\n```json\n{"a": 1}\n```\nDone.') == ({"a": 1}, None)
    assert find_json('The result is {"a": {"b": "}"}} as asked.') == ({"a": {"b": "}"}}, None)
    value, error = find_json('{"a": 1,}')
    assert value is None and error is not None and error.startswith("invalid JSON")
    assert find_json("no json here") == (None, "no JSON object found in the output")


def test_a_parse_or_schema_failure_scores_0_with_feedback() -> None:
    schema = {"type": "object", "required": ["date"], "properties": {"date": {"type": "string"}}}
    bad = predict_json('{"when": "today"}', schema)
    assert bad.error == "schema: 'date' is a required property"
    metric = resolve_metric(lambda e, p: 1.0)
    assert metric.score(ex("{}"), bad) == MetricResult(0.0, "schema: 'date' is a required property")
    cut = predict_json('{"date": "2020', schema, finish_reason="length")
    assert cut.error is not None and "cut off at the token limit" in cut.error
    good = predict_json('{"date": "2020-01-01"}', schema)
    assert (
        good.error is None
        and good.parsed == {"date": "2020-01-01"}
        and good.answer == '{"date":"2020-01-01"}'
    )


# ---------------------------------------------------------------- in a task


def _task(**fields: object) -> Task:
    data = {"name": "t", "source": {"type": "records", "files": {"test": "x.jsonl"}, "target_field": "a"},
            "input_fields": ["q"], **fields}  # fmt: skip
    return Task(TaskSpec.from_mapping(data, where="t.yaml"))


def test_task_yaml_metric_forms_and_errors() -> None:
    assert _task().metric.name == "exact_match"
    assert _task(metric={"numeric": {"tolerance": 1}}).metric.spec == {"numeric": {"tolerance": 1}}
    with pytest.raises(TaskError, match=r"t.yaml: unknown metric 'exact'.*did you mean exact_match"):
        _task(metric="exact")
    with pytest.raises(TaskError, match="json_schema needs extractor: json"):
        _task(json_schema={"type": "object"})
    task = _task(metric="no_such_module_xyz:fn")  # references are imported on use only
    with pytest.raises(MetricError, match="cannot import"):
        task.metric  # noqa: B018


def test_task_with_json_extractor_and_schema_predicts_parsed_objects() -> None:
    task = _task(extractor="json", metric="json_fields", json_schema={"type": "object", "required": ["a"]})
    prediction = task.predict('```json\n{"a": "1"}\n```')
    assert prediction.parsed == {"a": "1"} and prediction.error is None
    assert task.predict('{"b": 2}').error == "schema: 'a' is a required property"
    assert task.target(ex('{"a": "1"}')) == '{"a":"1"}'
    # a task file's default line asks for the object (as from_records' does and its demos
    # show), not "So the answer is ..."; one it states is kept
    from promptopt.tasks.task import JSON_ANSWER_FORMAT

    assert task.spec.answer_format == JSON_ANSWER_FORMAT
    assert _task(extractor="json", answer_format="Reply in JSON.").spec.answer_format == "Reply in JSON."
    assert "So the answer is" in _task().spec.answer_format
