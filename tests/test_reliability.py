"""Reliability and security: SIGKILLs with resume, two searches writing to one database at once,
a server failing 20% of requests in every way it can, and secrets that must not leak into any
artefact. The long versions with the README figures are in benchmarks/crash_resume.py."""

from __future__ import annotations

import functools
import json
import logging
import re
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from click.testing import CliRunner

from benchmarks.crash_resume import (
    DEFAULT_CONFIG,
    FAULT_MIX,
    comparable,
    faulty_server_search,
    finish_child,
    kill_and_resume,
    start_child,
)
from promptopt.backends import CachingBackend, FakeBackend
from promptopt.cli import cli
from promptopt.errors import TemplateError
from promptopt.leaderboard import leaderboard
from promptopt.store import Store
from promptopt.tasks import get_task
from promptopt.template import placeholders
from promptopt.testing.openai_server import FakeOpenAIServer
from promptopt.types import GenerationRequest, Message

REPO = Path(__file__).resolve().parent.parent
PG_URL_ENV = "PROMPTOPT_TEST_PG_URL"
SMALL_SEARCH = {**DEFAULT_CONFIG, "dev_size": 16, "test_size": 16, "n_proposals": 3}


# ------------------------------------------------------------------------ crash and resume


@pytest.mark.slow
def test_three_sigkills_lose_nothing_and_repeat_only_calls_in_flight(tmp_path: Path) -> None:
    report = kill_and_resume(3, seed=2, latency=0.004, config=SMALL_SEARCH, workdir=tmp_path)
    assert report.kills == 3 and report.processes == 4
    assert all(r.rows_before > 0 for r in report.records if r.kind == "progress"), (
        "kills must land mid-search"
    )
    assert report.duplicated_rows == 0 and report.lost_rows == 0 and report.changed_rows == 0
    assert report.rows == report.reference_rows > 0
    assert report.identical_leaderboard and report.identical_store_leaderboard
    # Every repeated call was in flight at a kill, and the extra calls are exactly those.
    assert report.repeats_outside_in_flight == 0
    assert report.total_calls - report.reference_calls == report.repeated_calls <= report.in_flight_at_kills
    # In flight means at most one batch of the killed process (batch_size 4).
    assert all(r.in_flight <= SMALL_SEARCH["batch_size"] for r in report.records)
    assert report.ok


_LONG_BATCH = """
import sys
from promptopt.backends import CachingBackend, FakeBackend, RetryingBackend
from promptopt.store import Store
from promptopt.types import GenerationRequest, Message
requests = [GenerationRequest(messages=(Message("user", f"q {i}"),)) for i in range(200)]
chain = CachingBackend(RetryingBackend(FakeBackend(latency_s=0.05)), Store(sys.argv[1]))
chain.generate(requests)  # one long batch, killed long before it ends
"""


def test_a_kill_in_the_middle_of_a_long_batch_keeps_the_answers_made_so_far(tmp_path: Path) -> None:
    db_url = f"sqlite:///{tmp_path / 'cache.db'}"
    child = subprocess.Popen([sys.executable, "-c", _LONG_BATCH, db_url], cwd=REPO)
    store = None
    engine = sa.create_engine(db_url)
    try:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:  # until the child has stored at least 20 answers
            time.sleep(0.2)
            assert child.poll() is None, "the child ended before it was killed"
            try:
                with engine.connect() as conn:
                    if conn.execute(sa.text("SELECT count(*) FROM po_cache")).scalar_one() >= 20:
                        break
            except sa.exc.OperationalError:  # the store is not created yet
                continue
        child.kill()  # SIGKILL: no finally, no flush
        child.wait(timeout=30)
        requests = [GenerationRequest(messages=(Message("user", f"q {i}"),)) for i in range(200)]
        store = Store(db_url)
        inner = FakeBackend()
        again = CachingBackend(inner, store).generate(requests)
    finally:
        if child.poll() is None:
            child.kill()
        if store is not None:
            store.close()
        engine.dispose()
    kept = 200 - len(inner.history)
    assert 20 <= kept < 200, kept  # the answers made before the kill are not asked again
    assert all(c.cached for c in again[:kept]) and not any(c.cached for c in again[kept:])
    assert [c.text for c in again] == [c.text for c in FakeBackend().generate(requests)]


# ------------------------------------------------------------------- two writers, one database


# A database of its own per test (created, then dropped), as the store suite does.
from tests.test_store import _fresh_pg_database  # noqa: E402


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def shared_db(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'shared.db'}"
    else:
        yield from _fresh_pg_database()


@pytest.mark.slow
def test_two_searches_writing_to_one_database_at_once(shared_db: str, tmp_path: Path) -> None:
    # The same seed twice: both searches want the same candidates, cache entries and the
    # same (candidate, example) evaluations at the same moments — the worst case for races.
    # A third search with another seed is started with them and must not mix with them.
    configs = [SMALL_SEARCH, SMALL_SEARCH, {**SMALL_SEARCH, "seed": 9}]
    processes = [
        start_child(shared_db, "new", tmp_path / f"writer-{i}.log", 0.002, config)
        for i, config in enumerate(configs)
    ]
    results = [finish_child(p, timeout=300) for p in processes]
    assert comparable(results[0]) == comparable(results[1])
    store = Store(shared_db)
    try:
        runs = store.list_runs()
        assert sorted(r.id for r in runs) == sorted(r["run_id"] for r in results)
        assert all(r.status == "finished" for r in runs)
        entries = leaderboard(store, top=None)
        for result in results:
            rows = store.get_evaluations(result["run_id"])
            keys = [(r.candidate_hash, r.split, r.example_id) for r in rows]
            assert len(keys) == len(set(keys)), "duplicated evaluation rows"
            mine = {e.candidate: e for e in entries if e.run_id == result["run_id"]}
            assert set(mine) == {r.candidate_hash for r in rows}
            for candidate, entry in mine.items():
                own = [r for r in rows if r.candidate_hash == candidate]
                assert entry.evaluations == len(own)
                for split, score in (("dev", entry.dev), ("test", entry.test)):
                    scored = [r.score for r in own if r.split == split and r.score is not None]
                    if score is None:
                        assert not scored
                        continue
                    assert score.n == len(scored)
                    assert score.accuracy == pytest.approx(sum(scored) / len(scored))
            # The run's own report agrees with the store.
            for row in result["leaderboard"]:
                entry = mine[row["candidate"]]
                assert entry.dev is not None and entry.dev.n == row["n"]
                assert entry.dev.accuracy == pytest.approx(row["dev"])
        with store.engine.connect() as conn:
            total, distinct = conn.execute(
                sa.text(
                    "SELECT count(*), (SELECT count(*) FROM (SELECT DISTINCT run_id, candidate_hash, split, "
                    "example_id FROM po_evaluations) AS d) FROM po_evaluations"
                )
            ).one()
        assert total == distinct
    finally:
        store.close()


# --------------------------------------------------------------------------- faulty server


@pytest.mark.slow
def test_search_survives_20_percent_faults_of_every_kind(tmp_path: Path) -> None:
    report = faulty_server_search(
        rate=0.2, seed=4, db=f"sqlite:///{tmp_path / 'faults.db'}", dev_size=12, test_size=16,
        n_proposals=2, rounds=0, client_timeout_s=1.5,  # a loaded machine must not time out a normal request
    )  # fmt: skip
    assert report.completed
    assert set(report.injected_by_kind) == set(FAULT_MIX), report.injected_by_kind
    assert report.faults_met == report.faults_injected  # each one seen by the client, none slipped through
    # Bounded retries: at most 3 re-sends per request; only failures are re-sent.
    assert report.retries <= report.faults_met
    assert report.requests_received > report.faults_injected
    # Failures are stored as failures, never as wrong answers (the server's model is always right).
    assert report.wrong_answers_in_store == 0
    assert report.failed_rows_in_store == report.failed_evaluations
    assert report.test_n + report.failed_evaluations >= 16
    assert report.winner_test_accuracy == 1.0
    assert report.ok


# -------------------------------------------------------------------------------- secrets

SECRET = "sk-planted-" + "Zq7" * 12
OTHER_SECRET = "sk-env-default-" + "Xy9" * 12
XSS = '<script>alert("planted")</script>'


@functools.cache
def _answers() -> dict[str, str]:
    task = get_task("gsm-symbolic")
    return {
        e.inputs["question"]: task.target(e)
        for split in ("train", "dev", "test")
        for e in task.examples(split)
    }


def _respond(request: dict[str, Any]) -> str:
    last = request["messages"][-1]["content"]
    question = next((q for q in _answers() if q in last), None)
    if question is None:  # a proposer request
        return f"Instruction: Solve it {XSS} carefully."
    return f"{XSS} The answer is {_answers()[question]}."


@pytest.mark.slow
def test_api_keys_never_reach_the_database_exports_report_or_logs(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setenv("OPENAI_API_KEY", OTHER_SECRET)
    monkeypatch.setenv("PROMPTOPT_PLANTED_KEY", SECRET)
    caplog.set_level(logging.DEBUG)  # every logger, the openai client's and httpx's included
    db = f"sqlite:///{tmp_path / 'secrets.db'}"
    outputs: list[str] = []
    runner = CliRunner()

    def run(args: list[str]) -> dict[str, Any]:
        result = runner.invoke(cli, args, catch_exceptions=False)
        outputs.append(result.stdout + result.stderr)
        assert result.exit_code == 0, result.stderr
        return json.loads(result.stdout) if "--json" in args else {}

    common = ["--task", "gsm-symbolic", "--model", "openai/fake-model", "--db", db, "--json", "--no-progress"]
    with FakeOpenAIServer(_respond, api_key=SECRET) as server:
        base = ["--base-url", server.base_url, "--api-key-env", "PROMPTOPT_PLANTED_KEY"]
        evaluated = run(["eval", *common, *base, "--limit", "4"])
        searched = run(["search", *common, *base, "--dev-size", "8", "--test-size", "8", "--proposals", "2",
                        "--rounds", "0"])  # fmt: skip
        auth = {r.headers.get("authorization") for r in server.chat_requests}
    with FakeOpenAIServer(_respond, api_key=OTHER_SECRET) as server:  # the default variable, OPENAI_API_KEY
        default_key = run(["eval", *common, "--base-url", server.base_url, "--limit", "3"])
    assert auth == {f"Bearer {SECRET}"}, "the key must reach the server (else this test proves nothing)"
    assert evaluated["accuracy"] == 1.0 and default_key["accuracy"] == 1.0 and searched["winner"]

    out = tmp_path / "artefacts"
    out.mkdir()
    for run_id in (searched["run_id"], evaluated["run_id"]):
        for fmt in ("yaml", "json", "openai", "jinja"):
            run(["export", run_id, "--format", fmt, "-o", str(out / f"{run_id}.{fmt}"), "--db", db])
        run(["report", run_id, "-o", str(out / f"{run_id}.html"), "--db", db])
    run(["leaderboard", "--db", db, "--json"])
    run(["show", searched["run_id"], "--db", db, "--json"])
    run(["runs", "--db", db, "--json"])

    logged = "\n".join(caplog.messages) + "\n".join(r.getMessage() for r in caplog.records)
    assert logged.strip(), "logging was captured"
    texts = {"CLI output": "\n".join(outputs), "logs": logged}
    files = sorted(p for p in tmp_path.rglob("*") if p.is_file())
    assert any(p.name.endswith(".db") for p in files) and len(list(out.iterdir())) == 10
    for key in (SECRET, OTHER_SECRET):
        for name, text in texts.items():
            assert key not in text, f"API key in {name}"
        for path in files:  # database (and its WAL/SHM if left), exports, reports
            assert key.encode() not in path.read_bytes(), f"API key in {path.relative_to(tmp_path)}"
    # Text from the model and the dataset is escaped in the report.
    for report in out.glob("*.html"):
        assert XSS not in report.read_text(), f"unescaped model text in {report.name}"


@pytest.mark.slow
def test_api_key_never_reaches_any_file_ray_writes(tmp_path: Path) -> None:
    # A search on a local Ray pool started by promptopt itself (a fresh process, as a user runs
    # it), then every file under Ray's temp dir (session logs, runtime-env agent, raylet,
    # GCS, workers) is searched for the key. It used to travel in a runtime_env, which
    # Ray's runtime_env_agent.log records in plain text.
    pytest.importorskip("ray")
    import os
    import shutil
    import tempfile

    ray_tmp = Path(tempfile.mkdtemp(prefix="po-ray-", dir="/tmp"))  # short: Ray's socket paths are limited
    try:
        env = {**os.environ, "PROMPTOPT_PLANTED_KEY": SECRET, "OPENAI_API_KEY": OTHER_SECRET,
               "RAY_TMPDIR": str(ray_tmp), "PYTHONPATH": str(REPO)}  # fmt: skip
        with FakeOpenAIServer(_respond, api_key=SECRET) as server:
            done = subprocess.run(
                [sys.executable, "-c", "from promptopt.cli import main; main()", "search", "--task", "gsm-symbolic", "--model",
                 "openai/fake-model", "--base-url", server.base_url, "--api-key-env", "PROMPTOPT_PLANTED_KEY",
                 "--db", f"sqlite:///{tmp_path / 'ray.db'}", "--workers", "2", "--dev-size", "8",
                 "--test-size", "8", "--proposals", "2", "--rounds", "0", "--json", "--no-progress"],
                env=env, capture_output=True, text=True, timeout=600, cwd=tmp_path,
            )  # fmt: skip
            auth = {r.headers.get("authorization") for r in server.chat_requests}
        assert done.returncode == 0, done.stderr[-3000:]
        assert auth == {f"Bearer {SECRET}"}, "the key must reach the server from the Ray workers"
        files = [p for p in ray_tmp.rglob("*") if p.is_file() and not p.is_symlink()]
        assert any(
            p.name.startswith("runtime_env_agent") or p.suffix in (".log", ".out", ".err") for p in files
        )
        assert sum(p.stat().st_size for p in files) > 0, "Ray wrote its logs here"
        for path in files:
            try:
                data = path.read_bytes()
            except OSError:  # sockets, fifos
                continue
            for key in (SECRET, OTHER_SECRET):
                assert key.encode() not in data, f"API key in Ray's {path.relative_to(ray_tmp)}"
        assert SECRET not in done.stdout + done.stderr
    finally:
        shutil.rmtree(ray_tmp, ignore_errors=True)


def test_error_messages_are_scrubbed_of_the_key(monkeypatch: pytest.MonkeyPatch) -> None:
    # A server that echoes the Authorization header into its error body must not get the key
    # into the stored error text.
    from promptopt.backends.openai_backend import OpenAIBackend
    from promptopt.types import GenerationRequest, Message

    monkeypatch.setenv("PROMPTOPT_PLANTED_KEY", SECRET)
    with FakeOpenAIServer(api_key="another-key") as server:
        backend = OpenAIBackend("fake-model", base_url=server.base_url, api_key_env="PROMPTOPT_PLANTED_KEY")
        [completion] = backend.generate([GenerationRequest(messages=(Message("user", f"say {SECRET}"),))])
        backend.close()
    assert completion.error and "401" in completion.error and SECRET not in completion.error
    assert SECRET not in repr(backend) and SECRET not in json.dumps(backend.describe())


# ------------------------------------------------------------------------------ injection


@pytest.mark.parametrize(
    "template",
    ["Q: {question.__class__}", "Q: {question.__class__.__mro__}", "{question[0]}", "{question!r}",
     "{__import__('os').system('true')}", "{question:>{x}}"],
)  # fmt: skip
def test_templates_cannot_reach_into_python(template: str, tmp_path: Path) -> None:
    with pytest.raises(TemplateError, match="not a plain field name|unbalanced"):
        placeholders(template)
    (tmp_path / "data.jsonl").write_text(json.dumps({"question": "1+1?", "answer": "2"}) + "\n")
    task = {"name": "inject", "input_fields": ["question"], "template": template, "extractor": "number",
            "source": {"type": "records", "files": {"test": "data.jsonl"}, "target_field": "answer"}}  # fmt: skip
    path = tmp_path / "task.yaml"
    path.write_text(json.dumps(task))
    result = CliRunner().invoke(cli, ["eval", "--task", str(path), "--model", "fake", "--db",
                                      f"sqlite:///{tmp_path / 'i.db'}", "--no-progress"])  # fmt: skip
    assert result.exit_code == 2, result.output
    assert "Traceback" not in result.output and "<class" not in result.output


# Deserialising pickles runs code. promptopt stores JSON only. The one exception: the Ray pool
# calls ``ray.cloudpickle.dumps`` to check that a backend can be shipped to Ray workers (Ray
# pickles everything it sends anyway); nothing in promptopt ever unpickles.
PICKLE_IMPORT = re.compile(r"^\s*(import|from)\s+[\w.]*\b(c?[Pp]ickle|_pickle|cloudpickle|dill|shelve|joblib)\b",
                           re.MULTILINE)  # fmt: skip
UNPICKLE = re.compile(r"\b(c?pickle|cloudpickle|dill|joblib|shelve)\.(loads?|Unpickler|open)\b|allow_pickle\s*=\s*True"
                      r"|torch\.load\(")  # fmt: skip
ALLOWED_PICKLE_IMPORTS = {"promptopt/pool/backend.py": "from ray import cloudpickle"}


def test_no_pickle_in_promptopt() -> None:
    sources = sorted((REPO / "promptopt").rglob("*.py"))
    assert len(sources) > 20
    for path in sources:
        name = path.relative_to(REPO).as_posix()
        text = path.read_text()
        assert not UNPICKLE.search(text), f"{name} deserialises a pickle (or could)"
        for match in PICKLE_IMPORT.finditer(text):
            assert ALLOWED_PICKLE_IMPORTS.get(name) == match.group(0).strip(), (
                f"{name}: {match.group(0).strip()}"
            )
            assert re.findall(r"cloudpickle\.(\w+)", text) and set(
                re.findall(r"cloudpickle\.(\w+)", text)
            ) == {"dumps"}
