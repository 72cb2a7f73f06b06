"""The search from the command line and across processes: dry run, runs listing, and a
search killed with SIGKILL (and stopped with SIGINT) that resumes to the same result."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from click.testing import CliRunner

from promptopt.cli import cli
from promptopt.store import Store

REPO = Path(__file__).resolve().parent.parent

SCRIPT = """
import sys
from promptopt.controller import SearchConfig, search
from promptopt.tasks import get_task
from promptopt.types import Candidate
from promptopt.testing.search_fakes import skilled_backend
db, mode = sys.argv[1], sys.argv[2]
task = get_task("gsm-symbolic")
backend = skilled_backend(task, latency_s=0.004)
if mode == "new":
    config = SearchConfig.from_preset("light", task="gsm-symbolic", model="fake", base=Candidate(instruction="Answer."),
                                      dev_size=24, test_size=40, n_proposals=4, rounds=1, seed=5, batch_size=4)
    result = search(config, backend=backend, db=db)
else:
    result = search(db=db, resume=mode, backend=backend)
print("RESULT", result.run_id, result.winner.hash, result.test["winner"]["accuracy"], len(backend.history), flush=True)
"""


def run_script(db: str, mode: str) -> subprocess.Popen[str]:
    return subprocess.Popen([sys.executable, "-c", SCRIPT, db, mode], cwd=REPO, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, env={**os.environ, "PYTHONPATH": str(REPO)})  # fmt: skip


def finish(process: subprocess.Popen[str]) -> list[str]:
    out, err = process.communicate(timeout=120)
    assert process.returncode == 0, err
    return out.split("RESULT", 1)[1].split()


def wait_for_rows(db: str, rows: int, timeout: float = 90.0) -> None:
    """Poll until the search has stored ``rows`` evaluations, so the kill lands mid-work."""
    deadline = time.monotonic() + timeout
    path = Path(db.removeprefix("sqlite:///"))
    while time.monotonic() < deadline:
        if path.exists():
            import sqlite3

            try:
                with sqlite3.connect(path, timeout=5) as conn:
                    if conn.execute("SELECT count(*) FROM po_evaluations").fetchone()[0] >= rows:
                        return
            except sqlite3.OperationalError:
                pass  # schema not created yet
        time.sleep(0.05)
    raise AssertionError(f"the search did not store {rows} evaluations in {timeout} s")


def test_cli_search_dry_run_and_runs(db_url: str) -> None:
    runner = CliRunner()
    dry = runner.invoke(
        cli, ["search", "--task", "gsm-symbolic", "--model", "fake", "--db", db_url, "--dry-run"]
    )
    assert dry.exit_code == 0 and "estimate: at most" in dry.stderr
    assert re.search(
        r"LLM calls for the search, \d+ of them the proposer's \(~[\d,]+ tokens in all\)", dry.stderr
    )  # APE's proposals
    assert "note:" not in dry.stderr
    generous = runner.invoke(cli, ["search", "--task", "gsm-symbolic", "--model", "fake", "--db", db_url,
                                   "--policy", "tpe", "--max-calls", "100000", "--dry-run"])  # fmt: skip
    assert generous.exit_code == 0, generous.stderr
    assert (
        "note: with 1 rounds and 6 proposals" in generous.stderr and "--max-calls 100000" in generous.stderr
    )
    assert Store(db_url).list_runs() == []
    result = runner.invoke(cli, ["search", "--task", "gsm-symbolic", "--model", "fake", "--db", db_url, "--dev-size", "10",
                                 "--test-size", "10", "--proposals", "2", "--rounds", "0", "--json"])  # fmt: skip
    assert result.exit_code == 0, result.stderr
    summary = json.loads(result.stdout)
    assert summary["test"]["n"] == 10 and summary["winner"]
    runs = runner.invoke(cli, ["runs", "--db", db_url])
    assert summary["run_id"] in runs.stdout and "finished" in runs.stdout
    bad = runner.invoke(
        cli, ["search", "--task", "gsm-symbolic", "--model", "fake", "--db", db_url, "--policy", "aep"]
    )
    assert bad.exit_code == 2 and "did you mean ape" in bad.stderr
    threads = runner.invoke(cli, ["search", "--task", "gsm-symbolic", "--model", "fake", "--db", db_url,
                                  "--dspy-threads", "4", "--dry-run"])  # fmt: skip
    assert threads.exit_code == 2 and "--dspy-threads is for the dspy-* policies, not ape" in threads.stderr
    share = runner.invoke(cli, ["search", "--task", "gsm-symbolic", "--model", "fake", "--db", db_url,
                                "--dspy-share", "0.7", "--dry-run"])  # fmt: skip
    assert share.exit_code == 2 and "--dspy-share is for the dspy-* policies, not ape" in share.stderr


@pytest.mark.slow
def test_search_help_names_every_policy_and_built_in_space() -> None:
    """The --policy and --space help is written out; this keeps it from going stale."""
    import re
    from pathlib import Path as _Path

    import promptopt
    from promptopt.policies import POLICIES

    text = re.sub(
        r"-\s+", "-", " ".join(CliRunner().invoke(cli, ["search", "--help"]).output.split())
    )  # (wrapped)
    assert all(re.search(rf"\b{re.escape(name)}\b", text) for name in POLICIES), text
    spaces = [p.stem for p in (_Path(promptopt.__file__).parent / "search_spaces").glob("*.yaml")]
    assert spaces and all(re.search(rf"\b{re.escape(name)}\b", text) for name in spaces), text


def test_killed_search_resumes_to_the_same_result(tmp_path: Path) -> None:
    reference = finish(run_script(f"sqlite:///{tmp_path / 'ref.db'}", "new"))
    db = f"sqlite:///{tmp_path / 'killed.db'}"
    process = run_script(db, "new")
    wait_for_rows(db, 30)
    process.send_signal(signal.SIGKILL)
    process.wait()
    [run] = Store(db).list_runs()
    assert run.status == "running"  # killed: nobody could mark it
    stored_before = len(Store(db).get_evaluations(run.id))
    assert stored_before > 0, "the kill should land mid-search"
    resumed = finish(run_script(db, run.id))
    assert resumed[1:3] == reference[1:3]  # same winner, same test accuracy
    store = Store(db)
    rows = store.get_evaluations(run.id)
    assert len(rows) == len({(r.candidate_hash, r.split, r.example_id) for r in rows})
    assert store.get_run(run.id).status == "finished"
    calls_reference, calls_resumed = int(reference[3]), int(resumed[3])
    assert calls_resumed < calls_reference  # the work done before the kill came from the cache
    store.close()


@pytest.mark.slow
def test_sigint_stops_cleanly_and_says_how_to_resume(tmp_path: Path) -> None:
    db = tmp_path / "int.db"
    code = (
        # Ctrl-C reaches a terminal's foreground process. A suite started in the background
        # by a non-interactive shell (`bash .ci/run &`) hands its children SIGINT ignored,
        # and Python then installs no KeyboardInterrupt handler: restore the terminal's case.
        "import signal; signal.signal(signal.SIGINT, signal.default_int_handler)\n"
        "import sys, time\n"
        "from promptopt.cli import main\n"
        "import promptopt.backends as b\n"
        "from promptopt.testing.search_fakes import skilled_backend\n"
        "from promptopt.tasks import get_task\n"
        "b.make_backend = lambda spec, **kw: skilled_backend(get_task('gsm-symbolic'), latency_s=0.02)\n"
        "import promptopt.controller as c; c.make_backend = b.make_backend\n"
        f"main(['search', '--task', 'gsm-symbolic', '--model', 'fake', '--db', {str(db)!r}, '--no-progress'])\n"
    )
    process = subprocess.Popen([sys.executable, "-c", code], cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                               text=True, env={**os.environ, "PYTHONPATH": str(REPO)})  # fmt: skip
    wait_for_rows(f"sqlite:///{db}", 20)
    assert process.poll() is None, "the search ended before it could be interrupted"
    process.send_signal(signal.SIGINT)
    out, err = process.communicate(timeout=60)
    assert process.returncode == 130, err
    assert "promptopt search --resume" in err and "Traceback" not in err
    [run] = Store(f"sqlite:///{db}").list_runs()
    assert run.status == "interrupted"


def test_dtype_is_for_local_models_only(tmp_path: Path) -> None:
    from promptopt.backends import make_backend

    runner = CliRunner()
    db_url = f"sqlite:///{tmp_path / 'po.db'}"
    bad = runner.invoke(
        cli,
        [
            "eval",
            "--task",
            "gsm-symbolic",
            "--model",
            "fake",
            "--dtype",
            "int8",
            "--db",
            db_url,
            "--limit",
            "2",
        ],
    )
    assert bad.exit_code == 2 and "--dtype int8 applies to local models" in bad.stderr
    assert make_backend("smollm2-135m", dtype="float32").dtype == "float32"  # type: ignore[attr-defined]
    assert make_backend("smollm2-135m", dtype="int8").model_id.endswith(":int8")


def test_final_in_budget_needs_a_call_limit_and_keeps_the_final_under_it(db_url: str) -> None:
    runner = CliRunner()
    base = ["search", "--task", "gsm-symbolic", "--model", "fake", "--db", db_url, "--dev-size", "12",
            "--test-size", "5", "--final-in-budget"]  # fmt: skip
    alone = runner.invoke(cli, base)
    assert (
        alone.exit_code == 2 and "--final-in-budget bounds --max-calls: give --max-calls too" in alone.stderr
    )
    result = runner.invoke(cli, [*base, "--max-calls", "40", "--json"])
    assert result.exit_code == 0, result.stderr
    summary = json.loads(result.stdout)
    store = Store(db_url)
    test_rows = store.get_evaluations(summary["run_id"], split="test")
    assert store.get_run(summary["run_id"]).config["budget"]["covers_final"] is True  # kept for a resume
    store.close()
    final_dev = summary["final_calls"] - len(test_rows)  # without the flag: 40 + 17 here
    assert summary["spent"]["calls"] + final_dev <= 40


def test_optimize_takes_final_in_budget(tmp_path: Path) -> None:
    import promptopt
    from promptopt.backends.fake import FakeBackend
    from promptopt.tasks import Task

    rows = [{"q": f"What is {i} + 1?", "a": str(i + 1)} for i in range(40)]
    task = Task.from_records(rows[:30], test=rows[30:], input_fields=["q"], target_field="a", dev_size=10)
    db = f"sqlite:///{tmp_path / 'o.db'}"
    best = promptopt.optimize(task, model=FakeBackend(), db=db, progress=False, max_calls=30, final_in_budget=True,
                              test_size=5)  # fmt: skip
    with Store(db) as store:
        run = store.get_run(best.provenance["run_id"])
        assert run.config["budget"] == {**run.config["budget"], "max_calls": 30, "covers_final": True}
        summary = run.summary or {}
        final_dev = summary["final_calls"] - len(store.get_evaluations(run.id, split="test"))
    assert summary["spent"]["calls"] + final_dev <= 30
