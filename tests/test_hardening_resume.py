"""Issue #24, point 11: resume of a live run is refused (or taken over explicitly), a
killed run shows as stale, the resume hint prints no password, and taking a run is a
compare-and-set in the store (SQLite and PostgreSQL)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.test_hardening import _invoke

# ----------------------------------------------------------------------------- 11. resume

SLOW_SEARCH = """
import sys
from promptopt.controller import SearchConfig, search
from promptopt.tasks import get_task
from promptopt.types import Candidate
from promptopt.testing.search_fakes import skilled_backend
db, mode, latency = sys.argv[1], sys.argv[2], float(sys.argv[3])
task = get_task("gsm-symbolic")
backend = skilled_backend(task, latency_s=latency)
config = SearchConfig.from_preset("light", task="gsm-symbolic", model="fake", base=Candidate(instruction="Answer."),
                                  dev_size=24, test_size=24, n_proposals=4, rounds=4, seed=5, batch_size=2)
try:
    result = search(config, backend=backend, db=db) if mode == "new" else search(db=db, resume=mode, backend=backend)
except Exception as exc:
    print("ERROR", type(exc).__name__, exc, flush=True)
    sys.exit(3)
print("RESULT", result.run_id, flush=True)
"""


def _start_search(db: str, mode: str = "new", latency: float = 0.03, heartbeat: str = "0.5") -> Any:
    import os
    import subprocess
    import sys

    repo = Path(__file__).resolve().parent.parent
    env = {**os.environ, "PYTHONPATH": str(repo), "PROMPTOPT_HEARTBEAT_S": heartbeat}
    return subprocess.Popen([sys.executable, "-c", SLOW_SEARCH, db, mode, str(latency)], cwd=repo, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)  # fmt: skip


def _wait_for_running_run(db: str, rows: int = 8) -> str:
    import time

    from promptopt.store import Store

    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        try:
            with Store(db) as store:
                runs = store.list_runs()
                if runs and len(store.get_evaluations(runs[0].id)) >= rows:
                    return runs[0].id
        except Exception:  # noqa: BLE001 - the child may still be creating the schema
            pass
        time.sleep(0.1)
    raise AssertionError("the search did not start")


@pytest.mark.slow
def test_resuming_a_live_run_is_refused_and_a_killed_one_is_stale(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import signal

    monkeypatch.setenv("PROMPTOPT_HEARTBEAT_S", "0.5")
    db = f"sqlite:///{tmp_path / 'live.db'}"
    child = _start_search(db, latency=0.3)  # slow: it is still running when the resume is tried
    try:
        run_id = _wait_for_running_run(db)
        code, out, err = _invoke(["runs", "--db", db])
        assert code == 0 and f"{run_id}" in out and "running" in out and "stale" not in out, out
        code, out, err = _invoke(["search", "--resume", run_id, "--db", db, "--no-progress"])
        assert (
            code == 2 and "is still running" in err and f"pid {child.pid}" in err and "--take-over" in err
        ), err
        assert "resume with" not in err  # the run is not this process's to resume: no pasteable command
        child.send_signal(signal.SIGKILL)
        child.wait()
        code, out, err = _invoke(["runs", "--db", db, "--json"])
        [listed] = [r for r in json.loads(out) if r["id"] == run_id]
        assert listed["status"] == "running" and listed["stale"] is True  # killed: nobody could mark it
        code, out, err = _invoke(["runs", "--db", db])
        assert "stale" in out
        resumed = _start_search(db, run_id)
        stdout, stderr = resumed.communicate(timeout=300)
        assert resumed.returncode == 0 and "RESULT" in stdout, stderr
    finally:
        if child.poll() is None:
            child.kill()
            child.wait()


@pytest.mark.slow
def test_take_over_stops_the_other_process_at_its_next_heartbeat(tmp_path: Path) -> None:
    from promptopt.store import Store

    db = f"sqlite:///{tmp_path / 'take.db'}"
    first = _start_search(db, latency=0.3)  # slow: it is still running when the others come
    try:
        run_id = _wait_for_running_run(db)
        second = _start_search(db, run_id)  # no take-over: refused
        out, _ = second.communicate(timeout=120)
        assert second.returncode == 3 and "still running" in out, out
        code, out, err = _invoke(["search", "--resume", run_id, "--take-over", "--model", "fake", "--db", db])
        assert code == 2 and "--model cannot be combined with --resume" in err, err
        third = subprocess_take_over(db, run_id)
        first_out, _ = first.communicate(timeout=300)
        assert first.returncode == 3 and "taken over" in first_out, first_out
        third_out, third_err = third.communicate(timeout=300)
        assert third.returncode == 0 and "RESULT" in third_out, third_err
        with Store(db) as store:
            assert store.get_run(run_id).status == "finished"
    finally:
        for process in (first,):
            if process.poll() is None:
                process.kill()
                process.wait()


def subprocess_take_over(db: str, run_id: str) -> Any:
    import os
    import subprocess
    import sys

    repo = Path(__file__).resolve().parent.parent
    script = SLOW_SEARCH.replace("search(db=db, resume=mode, backend=backend)",
                                 "search(db=db, resume=mode, backend=backend, take_over=True)")  # fmt: skip
    env = {**os.environ, "PYTHONPATH": str(repo), "PROMPTOPT_HEARTBEAT_S": "0.5"}
    return subprocess.Popen([sys.executable, "-c", script, db, run_id, "0.03"], cwd=repo, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)  # fmt: skip


def test_the_resume_hint_for_postgresql_leaves_the_password_out() -> None:
    from promptopt.cli import resume_command

    line = resume_command("abc123", "postgresql://alice:s3cr3t-pw@db.example:5432/po")
    assert "s3cr3t-pw" not in line and "***" not in line
    assert "--db postgresql://alice@db.example:5432/po" in line and "password left out" in line
    assert (
        resume_command("abc123", "sqlite:///a b.db")
        == "promptopt search --resume abc123 --db 'sqlite:///a b.db'"
    )


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def any_db(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'any.db'}"
    else:
        from tests.test_store import _fresh_pg_database

        yield from _fresh_pg_database()


def test_taking_a_run_is_a_compare_and_set_and_heartbeats_follow_the_owner(any_db: str) -> None:
    from promptopt.lease import owner_alive
    from promptopt.store import Store

    with Store(any_db) as store:
        run_id = store.create_run(kind="search", task="t", model="m", config={}, owner="elsewhere:1:a")
        first = store.get_run(run_id)
        assert first.owner == "elsewhere:1:a" and first.heartbeat_at is not None and owner_alive(first)
        assert store.take_run(run_id, "elsewhere:2:b", expected_owner="elsewhere:1:a")
        assert not store.take_run(run_id, "elsewhere:3:c", expected_owner="elsewhere:1:a"), (
            "only one takes it"
        )
        assert not store.heartbeat(run_id, "elsewhere:1:a") and store.heartbeat(run_id, "elsewhere:2:b")
        assert store.get_run(run_id).owner == "elsewhere:2:b"
        store.finish_run(run_id, "finished")
        assert not owner_alive(store.get_run(run_id))
