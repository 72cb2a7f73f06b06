"""Property-based fuzzing of what users hand promptopt: dataset files (JSONL, CSV, BBH
JSON), task YAML, search-space YAML, prompt templates and export files, driven through
the real CLI.

Every input must end in exit code 0 (it was valid) or 2 with a one-paragraph message —
never a traceback — and a failed run must never leave a half-written database (every
stored run is finished or marked failed).

The number of inputs per target is ``$PROMPTOPT_FUZZ_EXAMPLES`` (default 40, quick);
the counts are printed at the end of the test session. For the README figure:

    PROMPTOPT_FUZZ_EXAMPLES=500 python -m pytest tests/test_fuzz.py -q
"""

from __future__ import annotations

import json
import os
import sqlite3
import string
import tempfile
from collections import Counter
from pathlib import Path

import pytest
import yaml
from click.testing import CliRunner
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from promptopt.cli import cli

EXAMPLES = int(os.environ.get("PROMPTOPT_FUZZ_EXAMPLES", "40"))
FUZZ = settings(
    max_examples=EXAMPLES, deadline=None, suppress_health_check=list(HealthCheck), derandomize=True
)
TRIED: Counter[str] = Counter()
OUTCOMES: Counter[str] = Counter()

text = st.text(alphabet=st.characters(blacklist_categories=("Cs",)), max_size=60)
field_names = st.sampled_from(["question", "answer", "label", "id", "input", "text", "q"])
scalars = st.one_of(text, st.integers(-(10**6), 10**6), st.floats(allow_nan=True), st.booleans(), st.none())
values = st.one_of(scalars, st.lists(scalars, max_size=3), st.dictionaries(field_names, scalars, max_size=3))
rows = st.dictionaries(field_names, values, max_size=4)


def run_cli(target: str, args: list[str], workdir: Path) -> None:
    """Run the CLI; the outcome must be success or a clean error."""
    TRIED[target] += 1
    db = workdir / "fuzz.db"
    result = CliRunner().invoke(cli, [*args, "--db", f"sqlite:///{db}"], catch_exceptions=True)
    output = (result.stdout or "") + (result.stderr or "")
    assert result.exit_code in (0, 2), f"{target}: exit {result.exit_code}\n{output}\n{result.exception!r}"
    assert "Traceback" not in output, output
    if result.exit_code == 2:
        assert output.strip().startswith("error:") or "Error:" in output, output
    OUTCOMES[f"{target}: exit {result.exit_code}"] += 1
    if db.exists():
        with sqlite3.connect(db) as conn:
            tables = {r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type='table'")}
            if "po_runs" in tables:
                states = {r[0] for r in conn.execute("SELECT status FROM po_runs")}
                assert states <= {"finished", "failed"}, f"{target}: runs left in state {states}"


def task_file(
    folder: Path, data_name: str, *, template: str = "Q: {question}", extractor: str = "number"
) -> Path:
    path = folder / "task.yaml"
    path.write_text(yaml.safe_dump({
        "name": "fuzz", "input_fields": ["question"], "template": template, "extractor": extractor,
        "source": {"type": "records", "files": {"test": data_name}, "target_field": "answer"},
    }))  # fmt: skip
    return path


@FUZZ
@given(lines=st.lists(st.one_of(rows.map(json.dumps), text), min_size=0, max_size=6))
def test_fuzz_jsonl_dataset(lines: list[str]) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        (folder / "data.jsonl").write_text("\n".join(lines), encoding="utf-8")
        run_cli("jsonl dataset", ["eval", "--task", str(task_file(folder, "data.jsonl")), "--model", "fake",
                                  "--no-progress"], folder)  # fmt: skip


@FUZZ
@given(header=st.lists(field_names, max_size=4), body=st.lists(st.lists(text, max_size=5), max_size=5))
def test_fuzz_csv_dataset(header: list[str], body: list[list[str]]) -> None:
    import csv
    import io

    buffer = io.StringIO()
    writer = csv.writer(buffer)
    if header:
        writer.writerow(header)
    writer.writerows(body)
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        (folder / "data.csv").write_text(buffer.getvalue(), encoding="utf-8")
        run_cli("csv dataset", ["eval", "--task", str(task_file(folder, "data.csv")), "--model", "fake",
                                "--no-progress"], folder)  # fmt: skip


@FUZZ
@given(document=st.one_of(
    st.dictionaries(st.sampled_from(["examples", "canary"]), st.one_of(values, st.lists(rows, max_size=4))),
    st.lists(rows, max_size=3), text,
))  # fmt: skip
def test_fuzz_bbh_json(document: object) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        (folder / "bbh").mkdir()
        raw = document if isinstance(document, str) else json.dumps(document)
        (folder / "bbh" / "object_counting.json").write_text(raw, encoding="utf-8")
        run_cli("bbh json", ["eval", "--task", "bbh:object_counting", "--data-dir", str(folder), "--model", "fake",
                             "--no-progress"], folder)  # fmt: skip


task_keys = st.sampled_from(["name", "version", "source", "input_fields", "template", "extractor", "metric",
                             "answer_format", "dev", "test_size", "include", "family", "colour"])  # fmt: skip


@FUZZ
@given(document=st.one_of(st.dictionaries(task_keys, values, max_size=6), text))
def test_fuzz_task_yaml(document: object) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        (folder / "data.jsonl").write_text(json.dumps({"question": "1+1?", "answer": "2"}) + "\n")
        path = folder / "task.yaml"
        path.write_text(document if isinstance(document, str) else yaml.safe_dump(document), encoding="utf-8")
        run_cli("task yaml", ["eval", "--task", str(path), "--model", "fake", "--no-progress"], folder)


@FUZZ
@given(template=st.text(alphabet=string.ascii_letters + "{}_. :!0[]", max_size=40),
       extractor=st.sampled_from(["number", "text", "auto", "choice", "regex:(", "regex:(\\d+)", "nonsense"]))  # fmt: skip
def test_fuzz_templates_and_extractors(template: str, extractor: str) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        (folder / "data.jsonl").write_text(json.dumps({"question": "1+1?", "answer": "2"}) + "\n")
        path = task_file(folder, "data.jsonl", template=template, extractor=extractor)
        run_cli("template", ["eval", "--task", str(path), "--model", "fake", "--no-progress"], folder)


@FUZZ
@given(instruction=text, answer_format=text, cot=st.one_of(st.none(), text))
def test_fuzz_prompt_options(instruction: str, answer_format: str, cot: str | None) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        args = ["eval", "--task", "gsm-symbolic", "--limit", "2", "--model", "fake", "--no-progress",
                "--instruction", instruction, "--answer-format", answer_format]  # fmt: skip
        if cot is not None:
            args += ["--cot", cot]
        run_cli("prompt options", args, folder)


space_keys = st.sampled_from(["name", "version", "description", "dimensions", "order", "extra"])
dimension_names = st.sampled_from(["instruction", "cot_mode", "cot_trigger", "n_demos", "demo_selection",
                                   "samples", "temperature", "answer_format", "colour"])  # fmt: skip
dimension_bodies = st.dictionaries(
    st.sampled_from(["type", "choices", "low", "high", "when", "seeds", "grow", "step", "log"]),
    values,
    max_size=4,
)


@FUZZ
@given(document=st.one_of(
    st.dictionaries(space_keys, st.one_of(values, st.dictionaries(dimension_names, dimension_bodies, max_size=4)),
                    max_size=5),
    text,
))  # fmt: skip
def test_fuzz_search_space_yaml(document: object) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        path = folder / "space.yaml"
        path.write_text(document if isinstance(document, str) else yaml.safe_dump(document), encoding="utf-8")
        TRIED["search-space yaml"] += 1
        result = CliRunner().invoke(cli, ["validate", str(path)], catch_exceptions=True)
        output = (result.stdout or "") + (result.stderr or "")
        assert result.exit_code in (0, 2), f"exit {result.exit_code}\n{output}\n{result.exception!r}"
        assert "Traceback" not in output, output
        OUTCOMES[f"search-space yaml: exit {result.exit_code}"] += 1


export_keys = st.sampled_from(["format", "format_version", "prompt", "task", "model", "extraction", "sampling",
                               "provenance", "fingerprint"])  # fmt: skip


@FUZZ
@given(document=st.one_of(
    st.dictionaries(export_keys, st.one_of(values, st.dictionaries(field_names, values, max_size=3)), max_size=6)
    .map(lambda d: {"format": "promptopt-prompt", "format_version": 1, **d}),
    st.dictionaries(export_keys, values, max_size=5),
    text,
))  # fmt: skip
def test_fuzz_export_files(document: object) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        path = folder / "prompt.yaml"
        path.write_text(document if isinstance(document, str) else yaml.safe_dump(document), encoding="utf-8")
        run_cli("export file", ["eval", "--prompt-file", str(path), "--task", "gsm-symbolic", "--limit", "1",
                                "--model", "fake", "--no-progress"], folder)  # fmt: skip


@pytest.fixture(scope="module", autouse=True)
def _report() -> object:
    yield
    total = sum(TRIED.values())
    lines = [f"fuzz: {total} inputs tried, none ended in a traceback or a half-written database"]
    lines += [f"  {target}: {count}" for target, count in sorted(TRIED.items())]
    lines += [f"  ({outcome}: {count})" for outcome, count in sorted(OUTCOMES.items())]
    report = "\n".join(lines)
    print("\n" + report)
    out = os.environ.get("PROMPTOPT_FUZZ_REPORT")
    if out:
        Path(out).write_text(report + "\n")
