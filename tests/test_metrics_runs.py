"""Metrics end to end: the CLI's --metric, feedback in the store and in `show`, a metric
that raises, float scores through a search, and a killed-and-resumed run whose metric is
a Python callable (the Python API: Task.from_records + promptopt.optimize)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest
import sqlalchemy as sa
from click.testing import CliRunner

import promptopt
from promptopt.backends import FakeBackend
from promptopt.cli import cli
from promptopt.errors import MetricError
from promptopt.store import Store

REPO = Path(__file__).resolve().parent.parent

# Gold answers are digits; the fake model answers "The answer is N" with N from a hash of
# the request, so a graded metric gives every kind of score.
METRIC_CODE = '''
from promptopt.metrics import MetricResult


def near(example, prediction):
    """1 for the right digit, 0.5 one off, else 0; says why."""
    if prediction.answer is None:
        return MetricResult(0.0, "no answer found")
    try:
        gap = abs(float(prediction.answer) - float(example.target))
    except ValueError:
        return MetricResult(0.0, f"not a number: {prediction.answer}")
    if gap == 0:
        return 1.0
    if gap == 1:
        return MetricResult(0.5, f"one off: expected {example.target}, got {prediction.answer}")
    return MetricResult(0.0, f"expected {example.target}, got {prediction.answer}")
'''


def run_cli(*args: str) -> tuple[int, str, str]:
    result = CliRunner().invoke(cli, list(args))
    return result.exit_code, result.stdout, result.stderr


def rows(n: int, offset: int = 0) -> list[dict[str, str]]:
    return [
        {"question": f"What is {i} modulo 10, item {i}?", "answer": str(i % 10)}
        for i in range(offset, offset + n)
    ]


@pytest.fixture()
def metric_file(tmp_path: Path) -> Path:
    path = tmp_path / "my_metrics.py"
    path.write_text(METRIC_CODE)
    return path


def test_cli_eval_with_a_file_metric_stores_float_scores_and_feedback(metric_file: Path, db_url: str) -> None:
    code, out, err = run_cli("eval", "--task", "gsm-symbolic", "--limit", "12", "--model", "fake", "--db", db_url,
                             "--metric", f"{metric_file}:near", "--json")  # fmt: skip
    assert code == 0, err
    summary = json.loads(out)
    assert summary["metric"] == f"{metric_file}:near"
    with Store(db_url) as store:
        results = store.get_evaluations(summary["run_id"])
        assert store.get_run(summary["run_id"]).config["metric"] == f"{metric_file}:near"
    assert all(r.score is not None and 0 <= r.score <= 1 for r in results)
    assert any(r.feedback and r.feedback.startswith("expected") for r in results)
    code, out, err = run_cli("show", summary["run_id"], "--db", db_url, "--examples", "0")
    assert code == 0, err
    assert "worst items" in out and "expected" in out


@pytest.mark.parametrize(
    ("metric", "message"),
    [
        ("exact_mach", "did you mean exact_match"),
        ("no_such_module_xyz:fn", "cannot import module 'no_such_module_xyz'"),
        ("{numeric: {tolerence: 1}}", "unknown option(s) tolerence"),
        ("{llm_judge: {rubric: 'Is it polite'}}", "needs a scale"),
        ("{numeric: {tolerance: 1}", "not a valid YAML mapping"),
    ],
)
def test_cli_bad_metric_is_one_line_and_exit_2(metric: str, message: str, db_url: str) -> None:
    code, out, err = run_cli("eval", "--task", "gsm-symbolic", "--limit", "2", "--model", "fake", "--db", db_url,
                             "--metric", metric)  # fmt: skip
    assert code == 2, (out, err)
    assert message in err and "Traceback" not in err + out
    assert err.startswith("error: ") and len(err.split("\n  hint:")[0].strip().splitlines()) == 1


def test_cli_score_out_of_range_is_exit_2(tmp_path: Path, db_url: str) -> None:
    (tmp_path / "bad.py").write_text("def too_much(example, prediction):\n    return 1.5\n")
    code, _, err = run_cli("eval", "--task", "gsm-symbolic", "--limit", "2", "--model", "fake", "--db", db_url,
                           "--metric", f"{tmp_path / 'bad.py'}:too_much")  # fmt: skip
    assert code == 2 and "returned 1.5 for example" in err and "must be in [0, 1]" in err


def test_a_metric_that_raises_stops_the_run_which_resumes_once_fixed(tmp_path: Path, db_url: str) -> None:
    module = tmp_path / "flaky.py"
    module.write_text(
        "def metric(example, prediction):\n"
        "    if example.id == 'test-00030':\n"
        "        raise KeyError('label')\n"
        "    return float(prediction.answer == example.target)\n"
    )
    task = promptopt.Task.from_records(train=rows(40), test=rows(40, 100), input_fields=["question"],
                                       target_field="answer", extractor="number")  # fmt: skip
    reference = f"{module}:metric"
    kwargs = {
        "model": FakeBackend(),
        "db": db_url,
        "progress": False,
        "dev_size": 8,
        "test_size": 40,
        "max_calls": 40,
    }
    with pytest.raises(MetricError) as info:
        promptopt.optimize(task, metric=reference, **kwargs)  # type: ignore[arg-type]
    assert "raised on example test-00030: KeyError: 'label'" in str(info.value)
    assert "resume the search (or rerun the eval)" in (info.value.hint or "")
    with Store(db_url) as store:
        run = store.list_runs(limit=1)[0]
        assert run.status == "failed" and "test-00030" in run.summary["error"]  # type: ignore[index]
        kept = store.get_evaluations(run.id)
        assert kept and all(r.score in (0.0, 1.0) for r in kept)  # results so far are kept
    # Resuming needs the metric named again; a different one is refused.
    with pytest.raises(MetricError, match="name it again"):
        promptopt.search(db=db_url, resume=run.id, task=task.with_metric("exact_match").with_metric("exact_match"),
                         backend=FakeBackend())  # fmt: skip
    with pytest.raises(MetricError, match="not exact_match"):
        promptopt.search(db=db_url, resume=run.id, task=task, backend=FakeBackend(), metric="exact_match")
    module.write_text(
        "def metric(example, prediction):\n    return float(prediction.answer == example.target)\n"
    )
    best = promptopt.optimize(task, metric=reference, resume=run.id, **kwargs)  # type: ignore[arg-type]
    assert best.provenance["run_id"] == run.id
    with Store(db_url) as store:
        assert store.get_run(run.id).status == "finished"


def test_cli_a_metric_that_raises_says_the_command_that_resumes(tmp_path: Path, db_url: str) -> None:
    """The stopped search's message names its run and the whole resume command (with
    --metric, which a user metric needs named again); pasted once the metric is fixed, it
    finishes the run. The Python error carries the run id."""
    import shlex

    module = tmp_path / "flaky.py"
    module.write_text(
        "def metric(example, prediction):\n"
        "    if example.id == 'test-00003':\n"
        "        raise KeyError('label')\n"
        "    return float(prediction.answer == example.target)\n"
    )
    reference = f"{module}:metric"
    code, _, err = run_cli("search", "--task", "gsm-symbolic", "--metric", reference, "--max-calls", "30",
                           "--dev-size", "8", "--test-size", "10", "--model", "fake", "--db", db_url,
                           "--no-progress")  # fmt: skip
    assert code == 2 and "raised on example test-00003" in err
    command = err.split("resume with:", 1)[1].split("\n", 1)[0].strip()
    assert (
        command.startswith("promptopt search --resume ") and f"--metric {shlex.quote(reference)}" in command
    )
    with Store(db_url) as store:
        run = store.list_runs(limit=1)[0]
    assert run.status == "failed" and run.id in command
    code, out, _ = run_cli("show", run.id, "--db", db_url)
    assert "failed: MetricError: metric" in out and "test-00003" in out  # show says why it stopped
    module.write_text(
        "def metric(example, prediction):\n    return float(prediction.answer == example.target)\n"
    )
    code, out, err = run_cli(*shlex.split(command)[1:], "--no-progress", "--json")
    assert code == 0, err
    assert json.loads(out)["run_id"] == run.id
    # From Python: the error says which run to resume.
    module.write_text("def metric(example, prediction):\n    raise KeyError('label')\n")
    task = promptopt.get_task("gsm-symbolic")
    with pytest.raises(MetricError) as info:
        promptopt.optimize(task, model="fake", metric=reference, db=db_url, progress=False, max_calls=20,
                           dev_size=6, test_size=6)  # fmt: skip
    with Store(db_url) as store:
        assert info.value.run_id == store.list_runs(limit=1)[0].id


def test_a_lambda_metric_runs_but_refuses_to_resume(db_url: str) -> None:
    task = promptopt.Task.from_records(train=rows(30), test=rows(10, 100), input_fields=["question"],
                                       target_field="answer", extractor="number",
                                       metric=lambda e, p: float(p.answer == e.target))  # fmt: skip
    best = promptopt.optimize(task, model=FakeBackend(), db=db_url, progress=False, dev_size=6, test_size=10,
                              max_calls=20)  # fmt: skip
    assert best.run(question="What is 3 modulo 10?").answer is not None
    with pytest.raises(MetricError) as info:
        promptopt.optimize(
            task, model=FakeBackend(), db=db_url, progress=False, resume=best.provenance["run_id"]
        )
    assert "it is a lambda" in str(info.value) and "module-level function" in (info.value.hint or "")
    # a lambda that raises: the hint says to start again, not to resume
    raising = task.with_metric(lambda e, p: 1 / 0)
    with pytest.raises(MetricError) as info:
        promptopt.optimize(raising, model=FakeBackend(), db=db_url, progress=False, dev_size=6, test_size=10,
                           max_calls=20)  # fmt: skip
    assert "ZeroDivisionError" in str(info.value) and "start a new run" in (info.value.hint or "")


def test_continuous_scores_use_a_continuous_paired_test(metric_file: Path, db_url: str, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    monkeypatch.syspath_prepend(str(metric_file.parent))
    from my_metrics import near  # type: ignore[import-not-found]

    task = promptopt.Task.from_records(train=rows(40), test=rows(30, 100), input_fields=["question"],
                                       target_field="answer", extractor="number", metric=near)  # fmt: skip
    assert task.metric.spec == "my_metrics:near"
    from promptopt.controller import SearchConfig, search
    from promptopt.evaluation import make_candidate

    config = SearchConfig.from_preset("light", task=task.name, model="fake", base=make_candidate(task),
                                      dev_size=10, test_size=30)  # fmt: skip
    result = search(config, db=db_url, task=task, backend=FakeBackend())
    scores = [r.score for r in Store(db_url).get_evaluations(result.run_id, split="test")]  # type: ignore[union-attr]
    assert 0.5 in scores  # partial credit made it to the store
    assert result.summary()["metric"] == "my_metrics:near"  # type: ignore[union-attr]
    from promptopt.leaderboard import leaderboard

    entry = leaderboard(Store(db_url), run=result.run_id, top=1)[0]  # type: ignore[union-attr]
    assert entry.dev is not None and entry.dev.ci_low <= entry.dev.accuracy <= entry.dev.ci_high


def _evaluations(db: Path) -> int:
    engine = sa.create_engine(f"sqlite:///{db}")
    try:
        with engine.connect() as conn:
            return int(conn.execute(sa.text("SELECT count(*) FROM po_evaluations")).scalar() or 0)
    except sa.exc.OperationalError:
        return 0
    finally:
        engine.dispose()


KILLED_SCRIPT = """
import sys
sys.path.insert(0, {metric_dir!r})
import promptopt
from promptopt.backends import FakeBackend
from my_metrics import near

rows = [{{"question": f"What is {{i}} modulo 10, item {{i}}?", "answer": str(i % 10)}} for i in range(200)]
task = promptopt.Task.from_records(train=rows[:120], test=rows[120:160], input_fields=["question"],
                                   target_field="answer", extractor="number", metric=near)
best = promptopt.optimize(task, model=FakeBackend(latency_s={latency}), db={db!r}, progress=False,
                          dev_size=24, test_size=40, max_calls=150, seed=3)
print("RUN", best.provenance["run_id"], best.candidate.hash)
"""


def _script(tmp_path: Path, metric_dir: Path, db: Path, latency: float) -> Path:
    path = tmp_path / f"run_{latency}.py"
    path.write_text(
        textwrap.dedent(KILLED_SCRIPT.format(metric_dir=str(metric_dir), db=str(db), latency=latency))
    )
    return path


def test_a_killed_run_with_a_callable_metric_resumes_to_the_uninterrupted_result(
    tmp_path: Path, metric_file: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    env = {**os.environ, "PYTHONPATH": f"{REPO}{os.pathsep}{os.environ.get('PYTHONPATH', '')}"}
    # The reference: one uninterrupted run.
    whole_db = tmp_path / "whole.db"
    done = subprocess.run([sys.executable, str(_script(tmp_path, metric_file.parent, whole_db, 0.0))],
                          env=env, capture_output=True, text=True, timeout=300)  # fmt: skip
    assert done.returncode == 0, done.stderr
    _, whole_run, whole_winner = done.stdout.split()[-3:]
    # The same run, killed (SIGKILL: no clean-up at all) once some evaluations are stored.
    killed_db = tmp_path / "killed.db"
    process = subprocess.Popen([sys.executable, str(_script(tmp_path, metric_file.parent, killed_db, 0.01))],
                               env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)  # fmt: skip
    deadline = time.monotonic() + 240
    while _evaluations(killed_db) < 40 and process.poll() is None and time.monotonic() < deadline:
        time.sleep(0.1)
    assert process.poll() is None, "the run ended before it could be killed"
    process.send_signal(signal.SIGKILL)
    process.wait(timeout=30)
    with Store(str(killed_db)) as store:
        run = store.list_runs(limit=1)[0]
        assert run.status == "running"  # killed: nobody marked it
        stored = len(store.get_evaluations(run.id))
        assert stored >= 40
    # Resume in this process: the metric is named again (the same callable, by reference).
    monkeypatch.syspath_prepend(str(metric_file.parent))
    from my_metrics import near  # type: ignore[import-not-found]

    all_rows = rows(200)
    task = promptopt.Task.from_records(train=all_rows[:120], test=all_rows[120:160], input_fields=["question"],
                                       target_field="answer", extractor="number", metric=near)  # fmt: skip
    best = promptopt.optimize(task, model=FakeBackend(), db=str(killed_db), progress=False, resume=run.id)
    assert best.candidate.hash == whole_winner
    with Store(str(killed_db)) as killed, Store(str(whole_db)) as whole:
        assert killed.get_run(run.id).status == "finished"
        resumed = killed.get_run(run.id).summary or {}
        reference = whole.get_run(whole_run).summary or {}
        assert resumed["test"] == reference["test"]
        assert resumed["metric"] == "my_metrics:near"
        mine = {
            (r.candidate_hash, r.split, r.example_id): (r.score, r.feedback)
            for r in killed.get_evaluations(run.id)
        }
        theirs = {
            (r.candidate_hash, r.split, r.example_id): (r.score, r.feedback)
            for r in whole.get_evaluations(whole_run)
        }
    assert mine == theirs  # every stored score and feedback, none duplicated or lost


def test_cli_search_resume_needs_the_user_metric_named_again(metric_file: Path, db_url: str) -> None:
    reference = f"{metric_file}:near"
    common = ["--db", db_url, "--no-progress", "--json"]  # a resume takes no other settings
    code, out, err = run_cli("search", "--task", "gsm-symbolic", "--metric", reference, "--max-calls", "30",
                             "--dev-size", "8", "--test-size", "10", "--model", "fake", *common)  # fmt: skip
    assert code == 0, err
    run_id = json.loads(out)["run_id"]
    code, out, err = run_cli("search", "--resume", run_id, *common)
    assert code == 2 and "name it again to resume: --metric" in err and reference in err
    code, out, err = run_cli("search", "--resume", run_id, "--metric", "exact_match", *common)
    assert code == 2 and "would mix two kinds of score" in err
    code, out, err = run_cli("search", "--resume", run_id, "--metric", reference, *common)
    assert code == 0, err
    assert json.loads(out)["run_id"] == run_id and json.loads(out)["metric"] == reference


def test_export_keeps_the_metric_reference_and_never_imports_it(
    metric_file: Path, db_url: str, tmp_path: Path
) -> None:
    code, out, err = run_cli("eval", "--task", "gsm-symbolic", "--limit", "6", "--model", "fake", "--db", db_url,
                             "--metric", f"{metric_file}:near", "--json")  # fmt: skip
    assert code == 0, err
    run_id = json.loads(out)["run_id"]
    target = tmp_path / "prompt.yaml"
    code, out, err = run_cli("export", run_id, "--format", "yaml", "-o", str(target), "--db", db_url)
    assert code == 0, err
    loaded = promptopt.load(target)
    assert loaded.document["extraction"]["metric"] == f"{metric_file}:near"
    metric_file.write_text("raise SystemExit('this file must not be imported')\n")
    assert loaded.run(FakeBackend(), question="What is 2 + 2?").answer is not None  # no metric loaded
    with pytest.raises(MetricError, match="does not import user code"):
        loaded.evaluate(split="test", limit=2, backend=FakeBackend(), db=db_url)
    report = loaded.evaluate(split="test", limit=2, backend=FakeBackend(), db=db_url, metric="exact_match")
    assert report.metric == "exact_match"


def test_export_of_a_metric_with_options_loads_and_evaluates(db_url: str, tmp_path: Path) -> None:
    code, out, err = run_cli("eval", "--task", "gsm-symbolic", "--limit", "4", "--model", "fake", "--db", db_url,
                             "--metric", "{numeric: {tolerance: 1}}", "--json")  # fmt: skip
    assert code == 0, err
    target = tmp_path / "prompt.json"
    assert (
        run_cli("export", json.loads(out)["run_id"], "--format", "json", "-o", str(target), "--db", db_url)[0]
        == 0
    )
    loaded = promptopt.load(target)
    assert loaded.document["extraction"]["metric"] == {"numeric": {"tolerance": 1}}
    report = loaded.evaluate(split="test", limit=4, backend=FakeBackend(), db=db_url)
    assert report.metric == "numeric" and report.accuracy == json.loads(out)["accuracy"]


def test_per_label_only_for_a_label_set_and_worst_items_first() -> None:
    from promptopt.diagnostics import per_label, worst_items
    from promptopt.types import EvalResult

    def result(i: int, gold: str, score: float | None, split: str = "test") -> EvalResult:
        return EvalResult("c", f"e{i}", split, "x", gold, score, feedback=f"why {i}")

    labelled = [result(i, ["yes", "no"][i % 2], float(i % 3 == 0)) for i in range(10)]
    rows = per_label(labelled)
    assert [(r.label, r.n) for r in rows] == [("no", 5), ("yes", 5)]
    assert per_label([result(i, str(i * 7), 0.0) for i in range(10)]) == []  # numbers: not labels
    mixed = [
        result(0, "a", 0.5),
        result(1, "a", None),
        result(2, "a", 0.0, "dev"),
        result(3, "a", 0.2),
        result(4, "a", 1.0),
    ]
    assert [r.example_id for r in worst_items(mixed, 3)] == ["e1", "e3", "e0"]  # test first, failures first
