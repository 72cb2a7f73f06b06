from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner

import promptopt
from promptopt.backends import FakeBackend
from promptopt.cli import cli
from promptopt.store import Store, head_revision
from promptopt.types import GenerationRequest


def oracle(task):  # type: ignore[no-untyped-def]
    """Answers correctly for questions whose text has an even length, else wrongly."""
    answers = {
        e.inputs["question"]: task.target(e) for split in ("dev", "test") for e in task.examples(split)
    }

    def respond(request: GenerationRequest) -> str:
        question = next(q for q in answers if q in request.messages[-1].content)
        right = len(question) % 2 == 0
        return f"The answer is {answers[question] if right else '-1'}."

    return respond, answers


def test_evaluate_scores_and_stores_every_result(db_url: str, data_dir: Path) -> None:
    task = promptopt.get_task("gsm8k", data_dir)
    respond, answers = oracle(task)
    examples = task.examples("test", limit=20)
    expected = sum(1 for e in examples if len(e.inputs["question"]) % 2 == 0) / 20
    report = promptopt.evaluate(
        task=task, prompt="Solve it.", backend=FakeBackend(respond), split="test", limit=20, db=db_url
    )
    assert report.n == 20 and report.accuracy == pytest.approx(expected)
    assert report.ci_low <= report.accuracy <= report.ci_high
    assert report.calls == 20 and report.cache_hits == 0
    store = Store(db_url)
    rows = store.get_evaluations(report.run_id)
    assert len(rows) == 20
    assert {r.example_id for r in rows} == {e.id for e in examples}
    assert all(r.samples and r.samples[0].raw_output.startswith("The answer is") for r in rows)
    run = store.get_run(report.run_id)
    assert run.status == "finished" and run.kind == "eval" and run.dataset_hash == task.dataset_hash
    assert store.get_candidate(report.candidate.hash) == report.candidate
    # same evaluation again: everything from the cache, identical score
    again = promptopt.evaluate(
        task=task, prompt="Solve it.", backend=FakeBackend(respond), split="test", limit=20, db=db_url
    )
    assert again.accuracy == report.accuracy and again.calls == 0 and again.cache_hits == 20
    store.close()


def test_failed_run_is_marked_and_keeps_stored_rows(db_url: str) -> None:
    task = promptopt.get_task("gsm-symbolic")
    count = {"n": 0}

    def explode(request: GenerationRequest) -> str:
        count["n"] += 1
        if count["n"] > 4:
            raise RuntimeError("model crashed")
        return "The answer is 1."

    with pytest.raises(RuntimeError):
        promptopt.evaluate(
            task=task,
            prompt="x",
            backend=FakeBackend(explode),
            split="test",
            limit=10,
            batch_size=2,
            chunk_size=2,
            db=db_url,
        )
    store = Store(db_url)
    [run] = store.list_runs()
    assert run.status == "failed"
    assert len(store.get_evaluations(run.id)) == 4  # two finished batches were kept
    store.close()


def run_cli(*args: str) -> tuple[int, str, str]:
    result = CliRunner().invoke(cli, list(args))
    return result.exit_code, result.stdout, result.stderr


def test_cli_eval_json_and_stored(db_url: str) -> None:
    code, out, err = run_cli("eval", "--task", "gsm-symbolic", "--limit", "6", "--model", "fake", "--db", db_url,
                             "--cot", "Let's think step by step.", "--shots", "2", "--json")  # fmt: skip
    assert code == 0, err
    summary = json.loads(out)
    assert summary["n"] == 6 and summary["calls"] == 6 and 0 <= summary["ci95"][0] <= summary["ci95"][1] <= 1
    store = Store(db_url)
    assert len(store.get_evaluations(summary["run_id"])) == 6
    store.close()


def test_cli_eval_human_output(db_url: str) -> None:
    code, out, _ = run_cli(
        "eval", "--task", "gsm-symbolic", "--limit", "3", "--model", "fake", "--db", db_url, "--no-progress"
    )
    assert code == 0
    for word in ("accuracy", "95% CI", "tokens", "calls", "cache hits", "wall time", "run"):
        assert word in out


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["eval", "--task", "gsm8kk", "--model", "fake"], "did you mean gsm8k"),
        (["eval", "--task", "gsm8k", "--data-dir", "/nonexistent/dir", "--model", "fake"], "does not exist"),
        (["eval", "--task", "gsm-symbolic", "--model", "nonsense-model"], "unknown model"),
        (
            ["eval", "--task", "gsm-symbolic", "--model", "fake", "--samples", "3", "--temperature", "0"],
            "temperature",
        ),
        (["eval", "--task", "gsm-symbolic", "--model", "fake", "--demos", "nope-1"], "not in the demo pool"),
        (
            [
                "eval",
                "--task",
                "gsm-symbolic",
                "--model",
                "fake",
                "--cot",
                "Think.",
                "--two-stage",
                "--rescue",
            ],
            "--rescue cannot be combined with --two-stage",
        ),
    ],
)
def test_cli_bad_input_is_a_clear_message_and_exit_2(args: list[str], message: str, db_url: str) -> None:
    code, out, err = run_cli(*args, "--db", db_url)
    assert code == 2
    assert message in err and "Traceback" not in err + out


def test_cli_schema_mismatch_is_exit_2_and_keeps_data(db_url: str) -> None:
    # (the older-database → `promptopt db upgrade` path is covered in test_store.py)
    code, out, _ = run_cli("db", "upgrade", "--db", db_url)
    assert code == 0 and head_revision() in out
    code, _, _ = run_cli("eval", "--task", "gsm-symbolic", "--model", "fake", "--limit", "2", "--db", db_url)
    assert code == 0
    from sqlalchemy import create_engine, text

    engine = create_engine(db_url)
    with engine.begin() as conn:
        conn.execute(text("UPDATE po_alembic_version SET version_num = '9999_future'"))
    code, out, err = run_cli(
        "eval", "--task", "gsm-symbolic", "--model", "fake", "--limit", "1", "--db", db_url
    )
    assert code == 2 and "schema revision" in err and "Traceback" not in err + out
    with engine.begin() as conn:
        assert conn.execute(text("SELECT count(*) FROM po_evaluations")).scalar() == 2
    engine.dispose()


def test_cli_tasks_lists_builtins() -> None:
    code, out, _ = run_cli("tasks")
    assert code == 0 and "gsm8k" in out and "bbh:object_counting" in out
    code, out, _ = run_cli("tasks", "--json")
    assert {"gsm8k", "gsm-symbolic"} <= {t["name"] for t in json.loads(out)}


def test_cli_prompt_file_refuses_prompt_options(tmp_path: Path, db_url: str) -> None:
    prompt = tmp_path / "p.yaml"
    prompt.write_text("format: promptopt-prompt\n")
    code, out, err = run_cli(
        "eval", "--prompt-file", str(prompt), "--instruction", "x", "--model", "fake", "--db", db_url
    )
    assert code == 2 and "--instruction cannot be combined with --prompt-file" in err + out


def test_backend_gets_chunks_of_four_batches_by_default(db_url: str) -> None:
    """A local backend refills its running batch from the rest of a call, so evaluate()
    hands it 4 x batch_size requests per call (and stores results after each)."""
    calls: list[int] = []

    class Counting(FakeBackend):
        def generate(self, requests):  # type: ignore[no-untyped-def]
            calls.append(len(requests))
            return super().generate(requests)

    report = promptopt.evaluate(
        task=promptopt.get_task("gsm-symbolic"), prompt="x", backend=Counting(lambda r: "The answer is 1."),
        split="test", limit=10, batch_size=2, db=db_url,
    )  # fmt: skip
    assert calls == [8, 2] and report.n == 10
