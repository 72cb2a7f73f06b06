from __future__ import annotations

import json
from pathlib import Path

import pytest

from promptopt.errors import DataError, TaskError, TemplateError
from promptopt.tasks import get_task, list_tasks
from promptopt.template import placeholders, render, validate


def test_registry_lists_builtin_tasks() -> None:
    names = {info.name for info in list_tasks()}
    assert {
        "gsm8k",
        "gsm-symbolic",
        "bbh:object_counting",
        "bbh:date_understanding",
        "bbh:sports_understanding",
    } <= names
    assert not any(name.startswith("_") for name in names)


def test_unknown_task_suggests_close_names() -> None:
    with pytest.raises(TaskError) as info:
        get_task("gsm8")
    assert "unknown task 'gsm8'" in str(info.value)
    assert "did you mean gsm8k" in str(info.value)


def test_gsm8k_splits_are_deterministic_and_disjoint(data_dir: Path) -> None:
    task = get_task("gsm8k", data_dir)
    dev, train, test = task.examples("dev"), task.examples("train"), task.examples("test")
    assert len(test) == 1319 and len(dev) == 200 and len(train) == 7473 - 200
    assert not {e.id for e in dev} & {e.id for e in train}
    again = get_task("gsm8k", data_dir)
    assert [e.id for e in again.examples("dev")] == [e.id for e in dev]
    assert task.dataset_hash == again.dataset_hash
    first = test[0]
    assert first.target == task.target(first) and first.target.lstrip("-").isdigit()
    assert "<<" not in (train[0].solution or "")  # calculator annotations removed


def test_bbh_tasks_hold_out_test_and_parse_cot_demos(data_dir: Path) -> None:
    for name, extractor in [
        ("bbh:object_counting", "number"),
        ("bbh:date_understanding", "choice"),
        ("bbh:sports_understanding", "yesno"),
    ]:
        task = get_task(name, data_dir)
        assert task.extractor_name == extractor
        assert len(task.examples("test")) == 100  # 40% of 250 (bbh.yaml test_size: 0.4)
        assert len(task.cot_demos) == 3
        demo = task.demo("cot-0")
        assert demo.solution and task.target(demo) == demo.target


def test_gsm_symbolic_needs_no_data_dir() -> None:
    task = get_task("gsm-symbolic")
    test = task.examples("test", limit=5)
    assert len(test) == 5 and all(e.target for e in test)
    assert not {e.inputs["question"] for e in task.examples("test")} & {
        e.inputs["question"] for e in task.examples("train")
    }


def test_missing_data_dir_names_both_ways(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("PROMPTOPT_DATA_DIR", raising=False)
    import builtins

    real_import = builtins.__import__

    def no_datasets(name: str, *args: object, **kwargs: object) -> object:
        if name == "datasets":
            raise ImportError("no datasets here")
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", no_datasets)
    task = get_task("gsm8k")
    with pytest.raises(DataError) as info:
        task.examples("test")
    message = str(info.value)
    assert "--data-dir" in message and "PROMPTOPT_DATA_DIR" in message and "openai/gsm8k" in message


def test_nonexistent_data_dir(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="does not exist"):
        get_task("gsm8k", tmp_path / "nope").examples("test")


def _gsm_dir(tmp_path: Path, lines: list[str]) -> Path:
    (tmp_path / "gsm8k").mkdir()
    good = json.dumps({"question": "1+1?", "answer": "1+1=<<1+1=2>>2\n#### 2"})
    (tmp_path / "gsm8k" / "train.jsonl").write_text("\n".join([good] * 4) + "\n")
    (tmp_path / "gsm8k" / "test.jsonl").write_text("\n".join(lines) + "\n")
    return tmp_path


def test_malformed_jsonl_line_names_file_and_line(tmp_path: Path) -> None:
    good = json.dumps({"question": "q", "answer": "a\n#### 3"})
    root = _gsm_dir(tmp_path, [good, good, '{"question": "broken"'])
    with pytest.raises(DataError) as info:
        get_task("gsm8k", root).examples("test")
    assert f"{root / 'gsm8k' / 'test.jsonl'}:3" in str(info.value)


def test_gsm8k_row_without_hashes(tmp_path: Path) -> None:
    root = _gsm_dir(tmp_path, [json.dumps({"question": "q", "answer": "no final answer"})])
    with pytest.raises(DataError, match=r"test.jsonl:1: GSM8K answer has no '#### <number>'"):
        get_task("gsm8k", root).examples("test")


def test_custom_task_jsonl_and_csv(tmp_path: Path) -> None:
    (tmp_path / "train.jsonl").write_text(
        "\n".join(
            json.dumps({"id": f"t{i}", "review": f"text {i}", "label": "positive" if i % 2 else "negative"})
            for i in range(10)
        )
    )
    (tmp_path / "test.csv").write_text("id,review,label\nx1,great,positive\nx2,awful,negative\n")
    task_file = tmp_path / "sentiment.yaml"
    task_file.write_text(
        "name: sentiment\nsource:\n  type: records\n  files: {train: train.jsonl, test: test.csv}\n"
        "  target_field: label\n  id_field: id\ninput_fields: [review]\ntemplate: 'Review: {review}'\n"
        "extractor: 'regex:(positive|negative)'\ndev: {size: 4, seed: 1}\n"
    )
    task = get_task(str(task_file))
    assert [e.id for e in task.examples("test")] == ["x1", "x2"]
    assert len(task.examples("dev")) == 4
    assert task.extract("I think it is Positive.") == "positive"
    assert task.render_input(task.examples("test")[0]) == "Review: great"


def test_custom_task_found_on_task_path(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    folder = tmp_path / "mytasks"
    folder.mkdir()
    (folder / "mine.yaml").write_text(
        "include: gsm8k.yaml\nname: my-gsm\ndescription: GSM8K with my template\ntemplate: 'Q: {question}'\n"
    )
    monkeypatch.setenv("PROMPTOPT_TASK_PATH", str(folder))
    infos = {i.name: i for i in list_tasks()}
    assert infos["my-gsm"].origin == str(folder)
    assert get_task("my-gsm").spec.template == "Q: {question}"


@pytest.mark.parametrize(
    ("body", "message"),
    [
        (
            "name: x\nsource: {type: records, files: {test: a.jsonl}, target_field: y}\ninput_fields: [q]\ntemplate: 'no placeholder'\n",
            "no placeholder for the input",
        ),
        (
            "name: x\nsource: {type: records, files: {test: a.jsonl}, target_field: y}\ninput_fields: [q]\ntemplate: '{question}'\n",
            "unknown placeholder",
        ),
        (
            "name: x\nsource: {type: records, files: {test: a.jsonl}, target_field: y}\ninput_fields: [q]\ntemplate: '{q.__class__}'\n",
            "not a plain field name",
        ),
        ("name: x\nsource: {type: nope}\ninput_fields: [q]\n", "source.type 'nope' is unknown"),
        ("name: x\nsource: {type: records}\ninput_fields: [q]\ncolour: red\n", "unknown field(s) colour"),
        ("name: x\ninput_fields: [q]\n", "missing required field 'source'"),
        ("name: [unclosed\n", "invalid YAML"),
        (
            "name: x\nsource: {type: records, files: {test: a.jsonl}, target_field: y}\ninput_fields: [q]\n"
            "template: '{q}'\ndemo_answer: 'Answer: X'\n",
            "demo_answer must be a text with an {answer} slot",
        ),
    ],
)
def test_bad_task_files_have_clear_messages(tmp_path: Path, body: str, message: str) -> None:
    path = tmp_path / "bad.yaml"
    path.write_text(body)
    with pytest.raises((TaskError, TemplateError)) as info:
        get_task(str(path))
    assert message in str(info.value)
    assert str(path) in str(info.value)


def test_template_rendering_is_plain_substitution() -> None:
    assert render("Q: {q} {{literal}}", {"q": "2+2"}) == "Q: 2+2 {literal}"
    assert placeholders("{a} {b} {a}") == ["a", "b"]
    with pytest.raises(TemplateError, match="unbalanced"):
        validate("{a", ["a"])
    with pytest.raises(TemplateError, match="no value"):
        render("{a}", {})
