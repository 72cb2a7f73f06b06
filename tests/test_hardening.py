"""Issue #24, hardening: what a new user or a security reviewer meets at the edges — tiny
budgets, failing endpoints, odd bytes in data files, markup and escape codes in model text,
bad numbers on the command line, broken task files, resume of a live run."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from promptopt.cli import cli

FAST = ["--task", "gsm-symbolic", "--model", "fake", "--dev-size", "6", "--test-size", "6", "--proposals", "2",
        "--rounds", "1", "--no-progress"]  # fmt: skip


def _invoke(args: list[str]) -> tuple[int, str, str]:
    result = CliRunner().invoke(cli, args)
    if result.exception and not isinstance(result.exception, SystemExit):
        raise result.exception
    return result.exit_code, result.stdout, result.stderr


# ----------------------------------------------------------------------------- 2. small budgets


@pytest.mark.parametrize(
    "budget", [["--max-calls", "1"], ["--max-tokens", "500"], ["--max-minutes", "0"],
               ["--max-cost", "0"]],
)  # fmt: skip
def test_a_budget_too_small_to_score_anything_ends_with_the_starting_prompt(
    budget: list[str], tmp_path: Path
) -> None:
    code, out, err = _invoke(["search", *FAST, *budget, "--db", f"sqlite:///{tmp_path / 'b.db'}", "--json"])
    assert code == 0, err
    result = json.loads(out)
    assert result["winner"] == result["baseline"]
    assert "before any prompt was scored" in result["stopped_reason"]
    assert result["test"]["n"] == 6


def test_a_budget_that_scores_only_the_start_says_so(tmp_path: Path) -> None:
    """The starting prompt scored, the cap spent before any proposal was: the stop line
    says no proposal was scored (it said "the best found so far was kept")."""
    code, out, err = _invoke(["search", *FAST, "--max-calls", "6", "--db", f"sqlite:///{tmp_path / 'b.db'}"])
    assert code == 0, err
    assert "no proposal was scored before it ran out" in out and "best found so far" not in out, out
    assert "raise --max-calls" in out
    code, out, err = _invoke(["search", *FAST, "--batch-size", "1", "--max-tokens", "1500", "--db",
                              f"sqlite:///{tmp_path / 't.db'}"])  # fmt: skip
    assert code == 0 and "tokens (" in out, err
    assert "raise the limit that ran out" in out and "--max-calls" not in out, out  # not a limit it was given


def test_the_estimate_warns_when_the_cap_may_end_before_a_proposal_is_scored(tmp_path: Path) -> None:
    """A space search bootstraps demos and writes instructions before its first race: a
    cap below that is warned of before anything is spent, and the run then says it scored
    no proposal; a cap above it gets no warning."""
    db = f"sqlite:///{tmp_path / 'w.db'}"
    base = ["search", "--task", "gsm-symbolic", "--model", "fake", "--policy", "tpe", "--dev-size", "8",
            "--test-size", "4", "--db", db, "--no-progress"]  # fmt: skip
    code, _, err = _invoke([*base, "--max-calls", "20", "--dry-run"])
    assert code == 0 and "warning: --max-calls 20 may be spent before any proposal is scored" in err, err
    first = int(err.split("can take up to ")[1].split(" calls")[0])
    code, _, err = _invoke([*base, "--max-calls", str(first), "--dry-run"])
    assert code == 0 and "warning:" not in err, err
    code, out, err = _invoke(["search", *FAST, "--max-calls", "6", "--dry-run", "--db", db])
    assert code == 0 and "warning:" not in err  # (ape: no such figure, no warning)


def test_every_call_budget_from_one_up_ends_cleanly(tmp_path: Path) -> None:
    # Every budget between "nothing scored" and "the whole search" (the search needs ~60).
    db = f"sqlite:///{tmp_path / 'b.db'}"
    winners: list[int] = []
    for calls in range(1, 70, 3):
        code, out, err = _invoke(["search", *FAST, "--max-calls", str(calls), "--db", db, "--json"])
        assert code == 0, (calls, err)
        result = json.loads(out)
        assert result["test"]["n"] == 6 and result["winner"] in {
            r["candidate"] for r in result["leaderboard"]
        }
        winners.append(len(result["leaderboard"]))
    assert winners[0] == 1 and max(winners) > 1, (
        "the smallest budget scores the starting prompt only, larger ones search"
    )


# ------------------------------------------------------------------ 5. every request failed

FAILURE_MODES = {
    # mode: (server key, key in the environment, fault, expected text, expected hint)
    "wrong key": ("sk-right", "sk-wrong", None, "HTTP 401", "check OPENAI_API_KEY"),
    "no key": ("sk-right", None, None, "HTTP 401", "OPENAI_API_KEY is not set"),
    "all 500s": (None, "sk-any", "server_error", "HTTP 500", "check the server"),
    "refused": (None, "sk-any", "refused", "Connection refused", "check --base-url"),
}


def _failing_endpoint(mode: str) -> Any:
    import contextlib
    import socket

    from promptopt.testing.openai_server import FakeOpenAIServer, FaultPlan

    server_key, _, fault, _, _ = FAILURE_MODES[mode]
    if fault == "refused":
        sock = socket.socket()
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
        sock.close()  # nothing listens there now

        @contextlib.contextmanager
        def nothing() -> Iterator[str]:
            yield f"http://127.0.0.1:{port}/v1"

        return nothing()
    plan = FaultPlan(rates={fault: 1.0}) if fault else None

    @contextlib.contextmanager
    def serve() -> Iterator[str]:
        with FakeOpenAIServer(api_key=server_key, faults=plan) as server:
            yield server.base_url

    return serve()


@pytest.mark.parametrize("command", ["eval", "search"])
@pytest.mark.parametrize("mode", list(FAILURE_MODES))
def test_when_every_request_fails_the_user_is_told_why_and_the_exit_is_non_zero(
    mode: str, command: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    _, env_key, _, text, hint = FAILURE_MODES[mode]
    if env_key is None:
        monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    else:
        monkeypatch.setenv("OPENAI_API_KEY", env_key)
    extra = (["--limit", "2"] if command == "eval" else
             ["--dev-size", "2", "--test-size", "2", "--proposals", "1", "--rounds", "1"])  # fmt: skip
    with _failing_endpoint(mode) as base_url:
        code, out, err = _invoke([command, "--task", "gsm-symbolic", "--model", "openai/fake-model", "--base-url",
                                  base_url, "--db", f"sqlite:///{tmp_path / 'f.db'}", "--no-progress", *extra])  # fmt: skip
    assert code != 0, out
    assert "every request of" in err and text in err and hint in err, err
    assert "Traceback" not in out + err


def test_eval_json_n_agrees_with_the_text(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OPENAI_API_KEY", "sk-any")
    db = f"sqlite:///{tmp_path / 'n.db'}"
    with _failing_endpoint("all 500s") as base_url:
        args = ["eval", "--task", "gsm-symbolic", "--model", "openai/fake-model", "--base-url", base_url, "--db", db,
                "--no-progress", "--limit", "2"]  # fmt: skip
        _, text, _ = _invoke(args)
        _, raw, _ = _invoke([*args, "--json"])
    summary = json.loads(raw)
    assert (summary["n"], summary["n_scored"], summary["n_failed"]) == (2, 0, 2)
    assert f"{summary['n_scored']} of {summary['n']} scored, {summary['n_failed']} failed" in text


# -------------------------------------------------------------- 4. model and user text printed

NASTY = ("[/INST] [bold]Solve[/] \x1b[31mred\x1b[0m \x1b]8;;http://evil.example\x1b\\link\x1b]8;;\x1b\\ "
         "\x1b]0;title\x07 \u202eevil\u202c \x9b2J done")  # fmt: skip


def _nasty_responder(request: dict[str, Any]) -> str:
    last = request["messages"][-1]["content"]
    if "Instruction" in last or "instruction" in last:  # a proposer request
        return f"Instruction: {NASTY}"
    return f"{NASTY} The answer is 3."


def _assert_plain(text: str) -> None:
    for bad in ("\x1b", "\x07", "\x9b", "\u202e"):
        assert bad not in text, f"raw {bad!r} reached the terminal"
    assert "Traceback" not in text and "MarkupError" not in text


def test_model_text_with_markup_and_escape_codes_is_printed_as_text(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from promptopt.testing.openai_server import FakeOpenAIServer

    monkeypatch.setenv("OPENAI_API_KEY", "sk-any")
    db = f"sqlite:///{tmp_path / 'm.db'}"
    with FakeOpenAIServer(_nasty_responder) as server:
        code, out, err = _invoke(["search", "--task", "gsm-symbolic", "--model", "openai/fake-model", "--base-url",
                                  server.base_url, "--db", db, "--dev-size", "4", "--test-size", "4",
                                  "--proposals", "2", "--rounds", "1", "--no-progress"])  # fmt: skip
    assert code == 0, err
    _assert_plain(out + err)
    assert "[/INST]" in out and "\\x1b" in out, "the text is shown, escaped, not dropped"
    for args in (["leaderboard"], ["runs"], ["show", out.split("run ")[-1].split()[0], "--examples", "5"]):
        code, shown, err = _invoke([*args, "--db", db])
        assert code == 0, err
        _assert_plain(shown + err)


def test_user_instruction_with_markup_and_escape_codes(tmp_path: Path) -> None:
    db = f"sqlite:///{tmp_path / 'u.db'}"
    code, out, err = _invoke(["search", *FAST, "--instruction", NASTY, "--db", db])
    assert code == 0, err
    _assert_plain(out + err)
    code, out, err = _invoke(["eval", "--task", "gsm-symbolic", "--model", "fake", "--limit", "3", "--no-progress",
                              "--instruction", "[/bold] x \x1b[2J", "--db", db])  # fmt: skip
    assert code == 0, err
    _assert_plain(out + err)
    for args in (["leaderboard"], ["runs"]):
        code, shown, err = _invoke([*args, "--db", db])
        _assert_plain(shown + err)


# ------------------------------------------------------------------------- 3. dataset bytes


def _records_task(tmp_path: Path, data: bytes, suffix: str) -> Path:
    (tmp_path / f"data{suffix}").write_bytes(data)
    task = {"name": "bytes", "input_fields": ["question"], "template": "Q: {question}", "extractor": "number",
            "source": {"type": "records", "files": {"test": f"data{suffix}"}, "target_field": "answer"}}  # fmt: skip
    path = tmp_path / "task.yaml"
    path.write_text(json.dumps(task))
    return path


def _eval_task(path: Path, tmp_path: Path) -> tuple[int, str, str]:
    return _invoke(["eval", "--task", str(path), "--model", "fake", "--no-progress",
                    "--db", f"sqlite:///{tmp_path / 'd.db'}"])  # fmt: skip


GOOD_LINE = b'{"question": "1+1?", "answer": "2"}\n'


@pytest.mark.parametrize(
    ("data", "suffix", "line", "message"),
    [
        (GOOD_LINE + b'{"question": "caf\xe9?", "answer": "2"}\n', ".jsonl", 2, "not valid UTF-8 (byte 0xe9"),
        (GOOD_LINE * 2 + b'{"question": "\\ud800 x", "answer": "2"}\n', ".jsonl", 3, "lone surrogate"),
        (b"question,answer\n1+1?,2\n\xff\xfe,3\n", ".csv", 3, "not valid UTF-8 (byte 0xff"),
        (b"question,answer,question\n1+1?,2,3\n", ".csv", 1, "duplicate column 'question'"),
    ],
)
def test_bad_bytes_in_data_files_name_the_file_and_line(
    data: bytes, suffix: str, line: int, message: str, tmp_path: Path
) -> None:
    code, out, err = _eval_task(_records_task(tmp_path, data, suffix), tmp_path)
    assert code == 2, out + err
    assert f"data{suffix}:{line}:" in err and message in err, err
    assert "Traceback" not in out + err


@pytest.mark.parametrize("suffix", [".csv", ".jsonl"])
def test_a_byte_order_mark_is_accepted(suffix: str, tmp_path: Path) -> None:
    data = b"question,answer\n1+1?,2\n" if suffix == ".csv" else GOOD_LINE
    code, out, err = _eval_task(_records_task(tmp_path, b"\xef\xbb\xbf" + data, suffix), tmp_path)
    assert code == 0, err


# --------------------------------------------------------------------------- 6. bad numbers


@pytest.mark.parametrize("price", ["abc", "-0.5", ".nan", ".inf", "true", "[1]"])
def test_bad_prices_are_refused_with_the_file_and_model(price: str, tmp_path: Path) -> None:
    prices = tmp_path / "prices.yaml"
    prices.write_text(f"fake: {{input: {price}, output: 0.6}}\n")
    code, out, err = _invoke(["search", *FAST, "--max-cost", "1", "--prices", str(prices),
                              "--db", f"sqlite:///{tmp_path / 'p.db'}"])  # fmt: skip
    assert code == 2, out + err
    assert "prices.yaml" in err and "input price of 'fake' must be a number >= 0" in err, err


@pytest.mark.parametrize("seed", ["99999999999999999999999", "-1", "4294967296"])
def test_out_of_range_seeds_are_refused(seed: str, tmp_path: Path) -> None:
    code, out, err = _invoke(["search", *FAST, "--seed", seed, "--db", f"sqlite:///{tmp_path / 's.db'}"])
    assert code == 2 and "--seed" in err and "Traceback" not in err, err


def test_the_store_refuses_a_seed_it_cannot_hold(tmp_path: Path) -> None:
    from promptopt.errors import StoreError
    from promptopt.store import Store

    with Store(f"sqlite:///{tmp_path / 's.db'}") as store, pytest.raises(StoreError, match="out of range"):
        store.create_run(kind="eval", task="t", model="m", config={}, seed=10**23)


# ------------------------------------------------------------------ 8. a broken file in ./tasks


def test_a_broken_task_file_is_a_warning_for_that_task_only(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    (tmp_path / "tasks").mkdir()
    (tmp_path / "tasks" / "bad.yaml").write_text("name: [broken\n")
    (tmp_path / "tasks" / "bytes.yaml").write_bytes(b"name: \xff\xfe\n")
    (tmp_path / "tasks" / "notmap.yaml").write_text("- a list\n")
    monkeypatch.chdir(tmp_path)
    code, out, err = _invoke(["tasks"])
    assert code == 0 and "gsm8k" in out and "gsm-symbolic" in out, err
    warned = caplog.text
    assert "bad.yaml:2:1: invalid YAML" in warned and "bytes.yaml: not valid UTF-8" in warned, warned
    assert "notmap.yaml" in warned
    code, out, err = _invoke(["eval", "--task", "gsm-symbolic", "--model", "fake", "--limit", "2", "--no-progress",
                              "--db", f"sqlite:///{tmp_path / 't.db'}"])  # fmt: skip
    assert code == 0, err
    code, out, err = _invoke(
        ["eval", "--task", "bad", "--model", "fake", "--db", f"sqlite:///{tmp_path / 't.db'}"]
    )
    assert code == 2 and "bad.yaml:2:1: invalid YAML" in err, err


def test_a_task_file_named_like_a_built_in_one_says_it_replaces_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """./tasks wins a name over the built-in tasks (the search order), no longer silently."""
    (tmp_path / "tasks").mkdir()
    (tmp_path / "data.jsonl").write_text("\n".join(json.dumps({"q": f"{i}?", "a": str(i)}) for i in range(8)))
    (tmp_path / "tasks" / "mine.yaml").write_text(json.dumps({
        "name": "gsm-symbolic", "input_fields": ["q"], "template": "{q}",
        "source": {"type": "records", "files": {"train": str(tmp_path / "data.jsonl")}, "target_field": "a"}}))  # fmt: skip
    monkeypatch.chdir(tmp_path)
    code, out, err = _invoke(["tasks"])
    assert code == 0, err
    assert (
        f"task 'gsm-symbolic' in {tmp_path / 'tasks' / 'mine.yaml'} replaces promptopt's built-in one"
        in caplog.text
    )


# ------------------------------------------------------------------ 7. runs remember their data


def _task_elsewhere(tmp_path: Path) -> tuple[Path, Path]:
    """A task file in one folder, its data in another (found through --data-dir only)."""
    task_dir, data_dir = tmp_path / "taskdir", tmp_path / "datadir"
    task_dir.mkdir()
    data_dir.mkdir()
    lines = [json.dumps({"question": f"{i}+1?", "answer": str(i + 1)}) for i in range(12)]
    (data_dir / "train.jsonl").write_text("\n".join(lines[:8]) + "\n")
    (data_dir / "test.jsonl").write_text("\n".join(lines[8:]) + "\n")
    task = {"name": "elsewhere", "input_fields": ["question"], "template": "Q: {question}", "extractor": "number",
            "source": {"type": "records", "files": {"train": "train.jsonl", "test": "test.jsonl"},
                       "target_field": "answer"}}  # fmt: skip
    (task_dir / "task.yaml").write_text(json.dumps(task))
    return task_dir, data_dir


@pytest.mark.parametrize("command", ["eval", "search"])
def test_runs_export_from_anywhere_with_their_recorded_task_and_data(
    command: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("PROMPTOPT_DATA_DIR", raising=False)
    task_dir, data_dir = _task_elsewhere(tmp_path)
    db = f"sqlite:///{tmp_path / 'r.db'}"
    monkeypatch.chdir(tmp_path)  # relative task path and data dir, as a user types them
    extra = ["--limit", "4"] if command == "eval" else ["--dev-size", "4", "--test-size", "4", "--proposals", "1",
                                                        "--rounds", "0"]  # fmt: skip
    code, out, err = _invoke([command, "--task", "taskdir/task.yaml", "--data-dir", "datadir", "--model", "fake",
                              "--shots", "2", "--db", db, "--json", "--no-progress", *extra])  # fmt: skip
    assert code == 0, err
    run_id = json.loads(out)["run_id"]
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    code, out, err = _invoke(["export", run_id, "--format", "json", "-o", "p.json", "--db", db])
    assert code == 0, err
    exported = json.loads((elsewhere / "p.json").read_text())
    assert "1+1?" in json.dumps(exported) or "+1?" in json.dumps(exported), "the demos were written out"
    # The same files with other data: refused, naming the dataset hashes.
    (data_dir / "train.jsonl").write_text(json.dumps({"question": "9+9?", "answer": "18"}) + "\n")
    code, out, err = _invoke(["export", run_id, "--format", "json", "-o", "q.json", "--db", db])
    assert code == 2 and "not the data the run used" in err, err


def test_a_search_whose_data_moved_resumes_with_data_dir(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The data-directory error says "pass --data-dir"; a resume takes it (it was refused
    with every other setting) and checks that it is the run's data."""
    import shutil

    monkeypatch.delenv("PROMPTOPT_DATA_DIR", raising=False)
    _, data_dir = _task_elsewhere(tmp_path)
    db = f"sqlite:///{tmp_path / 'r.db'}"
    monkeypatch.chdir(tmp_path)
    code, out, err = _invoke(["search", "--task", "taskdir/task.yaml", "--data-dir", "datadir", "--model", "fake",
                              "--dev-size", "4", "--test-size", "4", "--proposals", "1", "--rounds", "0", "--db", db,
                              "--json", "--no-progress"])  # fmt: skip
    assert code == 0, err
    run_id = json.loads(out)["run_id"]
    shutil.move(data_dir, tmp_path / "moved")
    code, out, err = _invoke(["search", "--resume", run_id, "--db", db, "--no-progress"])
    assert code == 2 and "--data-dir" in err, err
    code, out, err = _invoke(["search", "--resume", run_id, "--data-dir", "moved", "--db", db, "--json",
                              "--no-progress"])  # fmt: skip
    assert code == 0 and json.loads(out)["run_id"] == run_id, err
    from promptopt.cli.checks import resume_command  # a resume command printed then names it again

    assert resume_command(run_id, db, None, "moved dir").endswith("--data-dir 'moved dir'")
    (tmp_path / "moved" / "train.jsonl").write_text(json.dumps({"question": "9+9?", "answer": "18"}) + "\n")
    code, out, err = _invoke(
        ["search", "--resume", run_id, "--data-dir", "moved", "--db", db, "--no-progress"]
    )
    assert code == 2 and "not the data the run used" in err, err


def test_a_run_of_a_task_built_in_python_says_how_to_export_it(tmp_path: Path) -> None:
    """No name or file reloads a Task.from_records task: the CLI says so and how to export
    from Python (it said "unknown task 'records'; did you mean rg:codeio?"); Python's export
    with the task works."""
    import promptopt
    from promptopt.export import export

    rows = [{"question": f"What is {i} plus 1?", "answer": str(i + 1)} for i in range(20)]
    task = promptopt.Task.from_records(rows, input_fields=["question"], target_field="answer", dev_size=6)
    db = f"sqlite:///{tmp_path / 'r.db'}"
    best = promptopt.optimize(
        task, model="fake", db=db, progress=False, max_calls=20, dev_size=6, test_size=4
    )
    run_id = best.provenance["run_id"]
    code, _, err = _invoke(["export", run_id, "--format", "yaml", "-o", str(tmp_path / "p.yaml"), "--db", db])
    assert code == 2 and "built in Python (Task.from_records)" in err and "task=task" in err, err
    code, out, _ = _invoke(["show", run_id, "--db", db])
    assert "built in Python" in out
    export(db, run_id, "yaml", tmp_path / "p.yaml", task=task)
    assert promptopt.load(tmp_path / "p.yaml").run(question="What is 7 plus 1?").answer is not None


def test_python_data_and_settings_mistakes_are_named() -> None:
    """A typo in a search setting given to optimize() is a ConfigError naming the closest
    (was a TypeError from the constructor); a None or NaN gold in Task.from_records is a
    DataError (was the text "None", offered to the model as a label)."""
    import promptopt
    from promptopt.errors import ConfigError, DataError

    rows = [{"q": str(i), "label": "pos" if i % 2 else "neg"} for i in range(30)]
    with pytest.raises(DataError, match=r"train\[30\]: field 'label' has no value"):
        promptopt.Task.from_records(
            rows + [{"q": "x", "label": None}], input_fields=["q"], target_field="label"
        )
    with pytest.raises(DataError, match=r"train\[30\]: field 'q' has no value \(nan\)"):
        promptopt.Task.from_records(rows + [{"q": float("nan"), "label": "pos"}], input_fields=["q"],
                                    target_field="label")  # fmt: skip
    pandas = pytest.importorskip("pandas")
    numpy = pytest.importorskip("numpy")
    for missing in (pandas.NA, pandas.NaT, numpy.float32("nan")):
        with pytest.raises(DataError, match=r"train\[30\]: field 'label' has no value"):
            promptopt.Task.from_records(
                rows + [{"q": "x", "label": missing}], input_fields=["q"], target_field="label"
            )
    frame = pandas.DataFrame([{**r, "why": "worked"} for r in rows])
    frame.loc[3, "why"] = numpy.nan  # a missing worked solution is none, not the text "nan"
    task = promptopt.Task.from_records(frame, input_fields=["q"], target_field="label", solution_field="why")
    assert {e.solution for split in ("train", "dev", "test") for e in task.examples(split)} == {
        "worked",
        None,
    }
    with pytest.raises(ConfigError, match="unknown search setting: minibath") as info:
        promptopt.optimize(task, model="fake", policy="reflect", minibath=4, db="sqlite://", progress=False)
    assert info.value.hint == "did you mean minibatch?"


def test_a_malformed_json_line_names_the_file_line_and_column(tmp_path: Path) -> None:
    from promptopt.errors import DataError
    from promptopt.tasks.loaders import _read_jsonl

    path = tmp_path / "d.jsonl"
    path.write_text('{"question": "1+1?", "answer": "2"}\n{"question": "unterminated}\n')
    with pytest.raises(DataError) as info:
        list(_read_jsonl(path))
    assert str(info.value) == f"{path}:2: not valid JSON (Unterminated string starting at column 14)"


# ------------------------------------------------------------------- 12. silently accepted


def test_exports_hold_no_endpoint_host_or_port(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from promptopt.testing.openai_server import FakeOpenAIServer

    monkeypatch.setenv("OPENAI_API_KEY", "sk-any")
    db = f"sqlite:///{tmp_path / 'e.db'}"
    with FakeOpenAIServer() as server:
        code, out, err = _invoke(["eval", "--task", "gsm-symbolic", "--model", "openai/fake-model", "--base-url",
                                  server.base_url, "--limit", "2", "--db", db, "--json", "--no-progress"])  # fmt: skip
        port = str(server.port)
    assert code == 0, err
    run_id = json.loads(out)["run_id"]
    for fmt in ("yaml", "json", "openai", "jinja", "dspy"):
        target = tmp_path / (f"x-{fmt}.json" if fmt in ("json", "dspy") else f"x.{fmt}")
        code, _, err = _invoke(["export", run_id, "--format", fmt, "-o", str(target), "--db", db])
        assert code == 0, err
        text = target.read_text()
        assert "127.0.0.1" not in text and f":{port}" not in text, fmt


def test_shots_beyond_any_context_window_are_refused_and_beyond_the_pool_warned(tmp_path: Path) -> None:
    db = f"sqlite:///{tmp_path / 'sh.db'}"
    base = ["eval", "--task", "gsm-symbolic", "--model", "fake", "--limit", "2", "--no-progress", "--db", db]
    code, out, err = _invoke([*base, "--shots", "100000"])  # every demo of the pool: ~85k tokens
    assert code == 0 and "warning: --shots 100000: the task has 799 demos" in err and "~85," in err, err
    code, out, err = _invoke([*base, "--shots", "4"])
    assert code == 0 and "warning" not in err, err
    # Long documents: 8 demos no model can take.
    task_dir, data_dir = _task_elsewhere(tmp_path)
    long = [json.dumps({"question": "word " * 15_000 + f"{i}+1?", "answer": str(i + 1)}) for i in range(16)]
    (data_dir / "train.jsonl").write_text("\n".join(long) + "\n")
    code, out, err = _invoke(["eval", "--task", str(task_dir / "task.yaml"), "--data-dir", str(data_dir), "--model",
                              "fake", "--shots", "8", "--no-progress", "--db", db])  # fmt: skip
    assert code == 2 and "more than any model's context window" in err and "fewer --shots" in err, err


def test_split_sizes_beyond_the_data_are_warned(tmp_path: Path) -> None:
    task_dir, data_dir = _task_elsewhere(tmp_path)  # 8 train (dev is drawn from it), 4 test
    code, out, err = _invoke(["search", "--task", str(task_dir / "task.yaml"), "--data-dir", str(data_dir), "--model",
                              "fake", "--dev-size", "500", "--test-size", "50", "--dry-run",
                              "--db", f"sqlite:///{tmp_path / 'sz.db'}"])  # fmt: skip
    assert code == 0, err
    assert "warning: dev size 500" in err and "warning: test size 50: the task has 4 test examples" in err, (
        err
    )


def test_resume_refuses_options_it_would_ignore(tmp_path: Path) -> None:
    code, out, err = _invoke(
        ["search", "--resume", "abc", "--task", "gsm8k", "--db", f"sqlite:///{tmp_path / 'x.db'}"]
    )
    assert code == 2 and "--task cannot be combined with --resume" in err, err


# ---------------------------------------------------------------- 9. progress moves with answers


def test_eval_progress_moves_with_answers_not_in_steps_of_a_chunk(tmp_path: Path) -> None:
    # The CLI's bar, fed as `promptopt eval` feeds it: stored batches and streamed answers.
    import promptopt
    from promptopt.backends.openai_backend import OpenAIBackend
    from promptopt.progress import EvalProgressBar
    from promptopt.testing.openai_server import FakeOpenAIServer

    bar = EvalProgressBar("gsm-symbolic test", enabled=False)
    bar.start(40, 1)
    seen: list[int] = []

    def answered(count: int) -> None:
        bar.answered(count)
        seen.append(bar.shown)

    with FakeOpenAIServer(latency_s=0.02) as server:
        backend = OpenAIBackend("fake-model", base_url=server.base_url, concurrency=4)
        report = promptopt.evaluate("gsm-symbolic", "Solve.", backend, limit=40, batch_size=16, progress=bar.update,
                                    on_answers=answered, db=f"sqlite:///{tmp_path / 'p.db'}")  # fmt: skip
        backend.close()
    assert report.n == 40 and bar.shown == 40 and seen[-1] == 40
    # One chunk of 64 requests holds all 40: before, the bar showed 0/40 until the end.
    assert len({d for d in seen if 0 < d < 40}) >= 5, seen
    assert seen == sorted(seen), "the bar never moves back"


def test_each_phase_has_its_own_clock_and_eta() -> None:
    """The final phase ends its bar at 1000/1000; the test phase after it must not inherit
    the finished state (its clock stood still and its ETA read 0:00:00 for minutes)."""
    from promptopt.progress import SearchDisplay

    with SearchDisplay(enabled=True) as display:
        display.phase_fraction("final", 0.0)
        display.phase_fraction("final", 1.0)
        task = display._progress.tasks[0]
        assert task.finished
        display.phase_fraction("test", 0.0)
        display.phase_fraction("test", 0.25)
        task = display._progress.tasks[0]
        assert not task.finished and task.finished_time is None and task.completed == 250
        display.phase_fraction("test", 1.0)
        # the same through update(), a phase's first report (as after a resume's final)
        from types import SimpleNamespace

        state = SimpleNamespace(
            phase="final", best_dev=0.5, spent={"calls": 3}, round=1, pool=2, budget_fraction=1.0
        )
        display.update(state)
        assert not display._progress.tasks[0].finished


def test_the_search_phase_shows_calls_as_they_are_spent(tmp_path: Path) -> None:
    """The proposer's calls before the first race moved nothing on the display (0 calls for
    95 s on a local model): the spend is reported as it grows, between the rounds' reports."""
    from promptopt.controller import SearchConfig, search
    from promptopt.tasks import get_task
    from promptopt.testing.search_fakes import skilled_backend
    from promptopt.types import Candidate

    task = get_task("gsm-symbolic")
    slow = skilled_backend(task, latency_s=0.15)
    config = SearchConfig.from_preset("light", task="gsm-symbolic", model="fake", base=Candidate(instruction="Go."),
                                      dev_size=4, test_size=2, n_proposals=4, rounds=0, batch_size=1, race_start=2)  # fmt: skip
    seen: list[tuple[str, int, int]] = []
    search(config, backend=slow, db=f"sqlite:///{tmp_path / 's.db'}",
           progress=lambda p: seen.append((p.phase, p.pool, p.spent["calls"])))  # fmt: skip
    before_race = [calls for phase, pool, calls in seen if phase == "search" and pool == 0]
    assert before_race and max(before_race) > 0, seen  # the proposals' calls, before any candidate is raced
    assert [c for _, _, c in seen] == sorted(c for _, _, c in seen), "the count never moves back"


def test_search_final_and_test_phases_move_with_answers(tmp_path: Path) -> None:
    from promptopt.backends import FakeBackend
    from promptopt.controller import SearchConfig, search
    from promptopt.progress import SearchDisplay
    from promptopt.types import Candidate

    display = SearchDisplay(enabled=False)
    updates: list[tuple[str, float]] = []

    def phase_fraction(phase: str, fraction: float) -> None:
        display.phase_fraction(phase, fraction)
        updates.append((phase, fraction))

    config = SearchConfig.from_preset("light", task="gsm-symbolic", model="fake", base=Candidate(instruction="Go."),
                                      dev_size=20, test_size=20, n_proposals=2, rounds=0, batch_size=2)  # fmt: skip
    phases: list[str] = []
    search(config, backend=FakeBackend(), db=f"sqlite:///{tmp_path / 's.db'}", phase_progress=phase_fraction,
           progress=lambda p: phases.append(p.phase))  # fmt: skip
    for phase in ("final", "test"):
        fractions = [f for p, f in updates if p == phase]
        assert fractions[0] == 0.0 and fractions[-1] == 1.0, (phase, fractions)
        assert len({f for f in fractions if 0 < f < 1}) >= 3, (phase, fractions)
        assert phases.count(phase) == 1, "progress itself is called once a phase, as before"


# ------------------------------------------------------- 10. the report's curve and the table


def test_the_report_curve_ends_at_the_leaderboards_top_not_at_a_lucky_early_score(tmp_path: Path) -> None:
    from promptopt.leaderboard import best_by_calls, leaderboard
    from promptopt.report import write_report
    from promptopt.store import Store
    from promptopt.types import Candidate, EvalResult

    lucky, steady = Candidate(instruction="Lucky early."), Candidate(instruction="Steady.")

    def results(candidate: Candidate, scores: list[float], start: int) -> list[EvalResult]:
        return [EvalResult(candidate.hash, f"dev-{start + i:03d}", "dev", "1", "1", score)
                for i, score in enumerate(scores)]  # fmt: skip

    db = f"sqlite:///{tmp_path / 'c.db'}"
    with Store(db) as store:
        run_id = store.create_run(kind="eval", task="gsm-symbolic", model="fake", config={})
        for candidate in (lucky, steady):
            store.add_candidate(run_id, candidate)
        store.record_evaluations(run_id, results(lucky, [1, 1, 1, 1, 0], 0))  # 4 of 5 = 80% early
        store.record_evaluations(run_id, results(steady, [0.0] * 6 + [1.0] * 9, 0))  # 60%
        store.record_evaluations(run_id, results(lucky, [0.0] * 3 + [1.0] * 7, 5))  # 11 of 15 = 73.3%
        points = best_by_calls(store, run_id, min_n=5)
        top = leaderboard(store, run=run_id)[0]
        store.finish_run(run_id, "finished", {})
    assert top.dev is not None and top.dev.accuracy == pytest.approx(11 / 15)
    assert points[-1][1] == pytest.approx(11 / 15), points  # was 0.8: above every final score
    assert max(p[1] for p in points) == pytest.approx(0.8)  # the early lead is still shown, as it was
    page = write_report(db, run_id, tmp_path / "r.html").path.read_text()
    assert "its last point is the top dev accuracy of the leaderboard" in page
