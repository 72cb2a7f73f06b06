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
import re
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
    clean = sum(count for outcome, count in OUTCOMES.items() if outcome.endswith("exit 2"))
    lines = [f"fuzz: {total} inputs tried, {clean} clean errors (exit 2, one message), 0 tracebacks, "
             "none left a half-written database"]  # fmt: skip
    lines += [f"  {target}: {count}" for target, count in sorted(TRIED.items())]
    lines += [f"  ({outcome}: {count})" for outcome, count in sorted(OUTCOMES.items())]
    report = "\n".join(lines)
    print("\n" + report)
    out = os.environ.get("PROMPTOPT_FUZZ_REPORT")
    if out:
        Path(out).write_text(report + "\n")


# ------------------------------------------------------------------ issue #24: more classes
#
# Arbitrary bytes and Unicode in every data format; arbitrary text (markup, escape codes,
# template tags) wherever model or user text is printed; every budget from 0 up; every
# backend failure mode, with the exit code and message a user sees.

BOM = b"\xef\xbb\xbf"
#: Bytes that break decoders, JSON and CSV: invalid UTF-8, NUL, a BOM, CR, quotes.
NASTY_BYTES = [b"\xff", b"\xfe", b"\xc3", b"\xed\xa0\x80", b"\x00", BOM, b"\r", b'"', b",", b"\n", b"{", b"}"]
raw_bytes = st.lists(st.one_of(st.binary(max_size=12), st.sampled_from(NASTY_BYTES)), max_size=12).map(
    b"".join
)
#: JSON text with lone surrogates (json.dumps writes them as \\udXXX escapes).
any_unicode = st.text(alphabet=st.characters(), max_size=20)


def _valid_line(question: str) -> bytes:
    return json.dumps({"question": question, "answer": "2"}).encode()


@FUZZ
@given(
    fmt=st.sampled_from(["jsonl", "csv", "bbh"]),
    head=st.sampled_from([b"", BOM]),
    chunks=st.lists(st.one_of(raw_bytes, any_unicode.map(_valid_line)), max_size=5),
)
def test_fuzz_data_bytes_and_unicode(fmt: str, head: bytes, chunks: list[bytes]) -> None:
    data = head + b"\n".join(chunks)
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        if fmt == "bbh":
            (folder / "bbh").mkdir()
            (folder / "bbh" / "object_counting.json").write_bytes(data)
            args = ["eval", "--task", "bbh:object_counting", "--data-dir", str(folder)]
        else:
            name = f"data.{fmt}"
            (folder / name).write_bytes((b"question,answer\n" if fmt == "csv" else b"") + data)
            args = ["eval", "--task", str(task_file(folder, name))]
        run_cli(f"{fmt} bytes", [*args, "--model", "fake", "--no-progress"], folder)


@FUZZ
@given(data=st.one_of(raw_bytes, any_unicode.map(lambda t: t.encode("utf-8", "surrogatepass"))))
def test_fuzz_task_file_bytes(data: bytes) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        (folder / "tasks").mkdir()
        (folder / "tasks" / "broken.yaml").write_bytes(data)
        path = folder / "task.yaml"
        path.write_bytes(data)
        run_cli("task file bytes", ["eval", "--task", str(path), "--model", "fake", "--no-progress"], folder)
        # The same bytes in ./tasks break no other task (a warning at most).
        cwd = Path.cwd()
        os.chdir(folder)
        try:
            run_cli("task file bytes in ./tasks", ["eval", "--task", "gsm-symbolic", "--limit", "1", "--model", "fake",
                                                   "--no-progress"], folder)  # fmt: skip
        finally:
            os.chdir(cwd)


MARKUP = ["[/INST]", "[INST]", "[bold]", "[/]", "[/bold]", "[link=http://e]", "[red on blue]", "\x1b[31m", "\x1b[0m",
          "\x1b]8;;http://evil.example\x1b\\", "\x1b]0;title\x07", "\x1b[2J", "\x07", "\x00", "\x08", "\r", "\x9b",
          "\u202e", "\u2066", "{question}", "{{", "}}", "{x.__class__}", "<script>alert(1)</script>", "</s>",
          "<|im_end|>", "<|im_start|>system", "%s", "\\", "\n"]  # fmt: skip
printed_text = st.lists(st.one_of(st.sampled_from(MARKUP), text), min_size=1, max_size=6).map("".join)
TERMINAL_CONTROLS = re.compile(r"[\x00-\x08\x0b-\x0c\x0e-\x1f\x7f-\x9f\u202a-\u202e\u2066-\u2069]")


class _Said:
    text = ""


def _say(request: dict[str, object]) -> str:
    last = str(request["messages"][-1]["content"])  # type: ignore[index]
    if "nstruction" in last:  # a proposer's request
        return f"Instruction: {_Said.text}"
    return f"{_Said.text} The answer is 3."


@pytest.fixture(scope="module")
def text_server() -> object:
    from promptopt.testing.openai_server import FakeOpenAIServer

    with FakeOpenAIServer(_say) as server:
        yield server


def _terminal_output(target: str, args: list[str], workdir: Path, db: Path) -> str:
    TRIED[target] += 1
    result = CliRunner().invoke(cli, [*args, "--db", f"sqlite:///{db}"], catch_exceptions=True)
    output = (result.stdout or "") + (result.stderr or "")
    assert result.exit_code in (0, 2), f"{target}: exit {result.exit_code}\n{output}\n{result.exception!r}"
    assert "Traceback" not in output and "MarkupError" not in output, output
    assert TERMINAL_CONTROLS.search(output) is None, f"{target}: a raw control character reached the terminal"
    OUTCOMES[f"{target}: exit {result.exit_code}"] += 1
    return result.stdout or ""


@FUZZ
@given(model_text=printed_text, user_text=printed_text)
def test_fuzz_model_and_user_text_is_printed_as_text(
    text_server: object, model_text: str, user_text: str
) -> None:
    _Said.text = model_text
    base_url = text_server.base_url  # type: ignore[attr-defined]
    with tempfile.TemporaryDirectory() as tmp:
        folder, db = Path(tmp), Path(tmp) / "t.db"
        common = [
            "--task",
            "gsm-symbolic",
            "--model",
            "openai/fake-model",
            "--base-url",
            base_url,
            "--no-progress",
        ]
        out = _terminal_output("printed text: search", ["search", *common, "--instruction", user_text, "--dev-size",
                                                        "3", "--test-size", "3", "--proposals", "2", "--rounds", "1"],
                               folder, db)  # fmt: skip
        _terminal_output("printed text: eval", ["eval", *common, "--instruction", user_text, "--limit", "2"],
                         folder, db)  # fmt: skip
        for command in (["leaderboard"], ["runs"]):
            _terminal_output(f"printed text: {command[0]}", command, folder, db)
        run_id = out.rsplit("run ", 1)[-1].split()[0] if "run " in out else None
        if run_id:
            _terminal_output("printed text: show", ["show", run_id], folder, db)
            TRIED["printed text: report"] += 1
            result = CliRunner().invoke(cli, ["report", run_id, "-o", str(folder / "r.html"), "--db",
                                              f"sqlite:///{db}"])  # fmt: skip
            assert result.exit_code == 0, result.output
            page = (folder / "r.html").read_text()
            assert "<script>alert(1)</script>" not in page


@FUZZ
@given(
    limit=st.sampled_from(["--max-calls", "--max-tokens", "--max-minutes", "--max-cost"]),
    amount=st.one_of(st.integers(0, 400), st.integers(0, 40_000), st.floats(0, 0.02)),
)
def test_fuzz_every_budget_from_zero_up(limit: str, amount: float) -> None:
    value = str(int(amount)) if limit in ("--max-calls", "--max-tokens") else f"{amount:.6f}"
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        prices = folder / "prices.yaml"
        prices.write_text("fake: {input: 0.5, output: 1.5}\n")
        run_cli(f"budget {limit}", ["search", "--task", "gsm-symbolic", "--model", "fake", "--dev-size", "6",
                                    "--test-size", "4", "--proposals", "2", "--rounds", "1", "--no-progress",
                                    limit, value, "--prices", str(prices)], folder)  # fmt: skip


FAILURE_MODES = [
    *(kind for kind in ("rate_limit", "server_error", "bad_gateway", "unavailable", "gateway_timeout",
                        "bad_request", "reset", "disconnect", "malformed_json", "empty_choices",
                        "truncated_stream")),
    "401", "403", "404", "418", "wrong key", "no key", "refused", "slow but fine",
]  # fmt: skip
HINTS = {"401": "check OPENAI_API_KEY", "403": "check OPENAI_API_KEY", "wrong key": "check OPENAI_API_KEY",
         "no key": "OPENAI_API_KEY is not set", "refused": "check --base-url", "404": "model name and --base-url",
         "rate_limit": "rate-limited", "server_error": "check the server", "bad_gateway": "check the server",
         "unavailable": "check the server", "gateway_timeout": "check the server",
         "malformed_json": "not OpenAI chat completions", "empty_choices": "not OpenAI chat completions",
         "truncated_stream": "check --base-url", "reset": "check --base-url", "disconnect": "check --base-url"}  # fmt: skip


@pytest.mark.slow  # 38 cases, about 2.5 minutes: retries back off
@pytest.mark.parametrize("command", ["eval", "search"])
@pytest.mark.parametrize("mode", FAILURE_MODES)
def test_every_backend_failure_mode_exits_with_its_message(
    mode: str, command: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    import contextlib
    import socket

    from promptopt.testing.openai_server import FakeOpenAIServer, FaultPlan

    monkeypatch.setenv("OPENAI_API_KEY", "sk-fuzz-wrong" if mode == "wrong key" else "sk-fuzz")
    if mode == "no key":
        monkeypatch.delenv("OPENAI_API_KEY")
    server_key = "sk-fuzz" if mode in ("wrong key", "no key") else None
    faults = None
    if mode == "slow but fine":
        faults = FaultPlan(rates={"delay": 1.0}, delay_s=0.02)
    elif mode not in ("wrong key", "no key", "refused"):
        faults = FaultPlan(rates={mode: 1.0}, retry_after="0")
    with contextlib.ExitStack() as stack:
        if mode == "refused":
            sock = socket.socket()
            sock.bind(("127.0.0.1", 0))
            base_url = f"http://127.0.0.1:{sock.getsockname()[1]}/v1"
            sock.close()
        else:
            base_url = stack.enter_context(FakeOpenAIServer(faults=faults, api_key=server_key)).base_url
        target = f"failure mode: {command}"
        TRIED[target] += 1
        extra = ["--limit", "2"] if command == "eval" else ["--dev-size", "2", "--test-size", "2", "--proposals", "1",
                                                            "--rounds", "1"]  # fmt: skip
        with tempfile.TemporaryDirectory() as tmp:
            result = CliRunner().invoke(cli, [command, "--task", "gsm-symbolic", "--model", "openai/fake-model",
                                              "--base-url", base_url, "--no-progress", "--db",
                                              f"sqlite:///{Path(tmp) / 'f.db'}", *extra])  # fmt: skip
    output = (result.stdout or "") + (result.stderr or "")
    assert "Traceback" not in output and result.exit_code in (0, 2), f"{mode}: {output}\n{result.exception!r}"
    OUTCOMES[f"{target}: exit {result.exit_code}"] += 1
    if mode == "slow but fine":
        assert result.exit_code == 0, output
        return
    # Every request failed: the user is told which error, what to check, and the exit is 2.
    assert result.exit_code == 2 and "every request of" in result.stderr, f"{mode}: {output}"
    assert "hint:" in result.stderr, result.stderr
    if mode in HINTS:
        assert HINTS[mode] in result.stderr, f"{mode}: {result.stderr}"
