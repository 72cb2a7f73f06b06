"""Searches on a real multi-node Ray cluster on loopback, the store on a real PostgreSQL.

The cluster (:class:`promptopt.testing.ray_cluster.LocalCluster`) is a head started by
``ray start --head`` as a process of its own plus two worker nodes joined to it with
``ray start --address``, each with the custom resource ``worker_node`` and ports of its own;
every process they start is ended when the module is done, even on failure. The nodes run
in an empty directory without the user's environment (no data dir, no API key); the
searches are run as a user runs them, by the CLI in a fresh process, from a directory
holding the task file and its data, with ``--ray-address auto`` (``RAY_ADDRESS``: the
driver on the head) or through Ray Client (``ray://127.0.0.1:PORT``).

Without ``ray`` these tests are skipped, unless ``PROMPTOPT_REQUIRE_RAY_CLUSTER=1`` (CI),
which makes them fail instead; the store is the suite's PostgreSQL (``PROMPTOPT_TEST_PG_URL``,
see tests/test_store.py).
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from promptopt.store import Store
from promptopt.testing.openai_server import FakeOpenAIServer
from tests.test_store import _fresh_pg_database

pytestmark = [pytest.mark.cluster, pytest.mark.slow]

REPO = Path(__file__).resolve().parent.parent
REQUIRE_ENV = "PROMPTOPT_REQUIRE_RAY_CLUSTER"
SECRET = "sk-cluster-" + "Zq7" * 12
WORKER_CLASSES = ("ChatWorker", "BackendWorker")
ON_WORKER_NODES = '{"worker_node": 0.01}'
SEARCH = ["--dev-size", "12", "--test-size", "8", "--proposals", "3", "--rounds", "0", "--shots", "0"]


@pytest.fixture(scope="module")
def cluster() -> Iterator[Any]:
    try:
        import ray  # noqa: F401
    except ImportError:
        if os.environ.get(REQUIRE_ENV) == "1":
            pytest.fail(f"{REQUIRE_ENV}=1 but ray is not installed (pip install 'promptopt[ray]')")
        pytest.skip("the multi-node tests need ray (pip install 'promptopt[ray]')")
    from promptopt.testing.ray_cluster import LocalCluster

    with LocalCluster(worker_nodes=2, env={"PYTHONPATH": str(REPO)}) as running:
        running.wait_for_nodes(3)
        running.wait_for_client()
        yield running


@pytest.fixture
def pg_url() -> Iterator[str]:
    yield from _fresh_pg_database()


@pytest.fixture
def workdir(tmp_path: Path) -> Path:
    """The user's directory: a task file and its data, found by relative paths only."""
    (tmp_path / "taskdir").mkdir()
    (tmp_path / "datadir").mkdir()
    lines = [json.dumps({"question": f"{i}+1?", "answer": str(i + 1)}) for i in range(40)]
    (tmp_path / "datadir" / "train.jsonl").write_text("\n".join(lines[:28]) + "\n")
    (tmp_path / "datadir" / "test.jsonl").write_text("\n".join(lines[28:]) + "\n")
    task = {"name": "plus-one", "input_fields": ["question"], "template": "Q: {question}", "extractor": "number",
            "source": {"type": "records", "files": {"train": "train.jsonl", "test": "test.jsonl"},
                       "target_field": "answer"}}  # fmt: skip
    (tmp_path / "taskdir" / "task.yaml").write_text(json.dumps(task))
    return tmp_path


def respond(request: dict[str, Any]) -> str:
    """A deterministic model that is right on some questions, depending on the prompt, so
    that candidates differ; proposals depend on the proposer's request."""
    text = json.dumps(request["messages"], sort_keys=True)
    digest = int(hashlib.sha256(text.encode()).hexdigest()[:8], 16)
    found = re.findall(r"Q: (\d+)\+1\?", request["messages"][-1]["content"])
    if not found:
        return f"Instruction: Add one, way {digest % 997}."
    n = int(found[-1])
    return f"The answer is {n + 1 if digest % 3 else n}."


def run_search(
    workdir: Path,
    db: str,
    model: list[str],
    *,
    env: dict[str, str],
    extra: list[str] = (),
    timeout: float = 600,
) -> subprocess.CompletedProcess[str]:
    command = [sys.executable, "-c", "from promptopt.cli import main; main()", "search",
               "--task", "taskdir/task.yaml", "--data-dir", "datadir", *model, "--db", db, *SEARCH,
               "--json", "--no-progress", *extra]  # fmt: skip
    env = {**env, "PYTHONPATH": str(REPO), "OPENAI_API_KEY": SECRET}
    env.pop("PROMPTOPT_DATA_DIR", None)
    return subprocess.run(command, cwd=workdir, env=env, capture_output=True, text=True, timeout=timeout)


def start_search(workdir: Path, db: str, model: list[str], *, env: dict[str, str], extra: list[str]) -> Any:
    command = [sys.executable, "-c", "from promptopt.cli import main; main()", "search",
               "--task", "taskdir/task.yaml", "--data-dir", "datadir", *model, "--db", db, *SEARCH,
               "--json", "--no-progress", *extra]  # fmt: skip
    env = {**env, "PYTHONPATH": str(REPO), "OPENAI_API_KEY": SECRET}
    env.pop("PROMPTOPT_DATA_DIR", None)
    return subprocess.Popen(
        command, cwd=workdir, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )


def outcome(done: subprocess.CompletedProcess[str]) -> dict[str, Any]:
    assert done.returncode == 0, done.stderr[-4000:]
    return json.loads(done.stdout)


def same_search(a: dict[str, Any], b: dict[str, Any], *, attempts: bool = True) -> None:
    """Two searches' results agree in everything but ids, times and the database (and,
    with ``attempts=False``, the model calls made, which count attempts sent again)."""
    keys = ["winner", "winner_prompt", "baseline", "leaderboard", "test", "cache_hits", "pareto_front",
            "winner_dev_test"] + (["model_calls"] if attempts else [])  # fmt: skip
    for key in keys:
        assert a[key] == b[key], key
    assert {k: v for k, v in a["spent"].items() if k != "minutes"} == {
        k: v for k, v in b["spent"].items() if k != "minutes"
    }


def rows(url: str, run_id: str) -> list[tuple[Any, ...]]:
    with Store(url) as store:
        return sorted(
            (r.candidate_hash, r.split, r.example_id, r.answer, r.score)
            for r in store.get_evaluations(run_id)
        )


def run_status(url: str, run_id: str) -> str:
    with Store(url) as store:
        return str(store.get_run(run_id).status)


def worker_nodes(cluster: Any) -> set[str]:
    return {node for node, res in cluster.node_resources().items() if res.get("worker_node")}


def new_workers(cluster: Any, before: set[str]) -> list[dict[str, Any]]:
    return [a for a in cluster.actors(*WORKER_CLASSES) if a["id"] not in before]


# ------------------------------------------------------------ 1. the cluster, as a user runs it


@pytest.mark.parametrize("model", ["fake", "openai"])
@pytest.mark.parametrize("address", ["auto", "client"])
def test_search_on_the_cluster_ends_as_the_serial_search(
    cluster: Any, pg_url: str, workdir: Path, tmp_path: Path, address: str, model: str
) -> None:
    with FakeOpenAIServer(respond, api_key=SECRET) as server:
        spec = (
            ["--model", "fake"]
            if model == "fake"
            else ["--model", "openai/plus", "--base-url", server.base_url]
        )
        serial = outcome(
            run_search(workdir, f"sqlite:///{tmp_path / 'serial.db'}", spec, env=dict(os.environ))
        )
        serial_requests = server.chat_request_count
        before = {a["id"] for a in cluster.actors(*WORKER_CLASSES)}
        ray_address = "auto" if address == "auto" else cluster.client_address
        env = cluster.driver_env() if address == "auto" else {**os.environ, **cluster.auth_env()}
        done = run_search(
            workdir, pg_url, spec, env=env,
            extra=["--workers", "2", "--ray-address", ray_address, "--ray-resources", ON_WORKER_NODES],
        )  # fmt: skip
        pooled = outcome(done)
        auth = {r.headers.get("authorization") for r in server.chat_requests}
        pooled_requests = server.chat_request_count - serial_requests
    same_search(pooled, serial)
    assert rows(pg_url, pooled["run_id"]) == rows(f"sqlite:///{tmp_path / 'serial.db'}", serial["run_id"])
    assert len(rows(pg_url, pooled["run_id"])) > 3 * 12
    # Where the model workers ran: the worker nodes, never the head (the driver's node).
    placed = new_workers(cluster, before)
    assert len(placed) == 2, placed
    assert {a["node"] for a in placed} <= worker_nodes(cluster), (placed, cluster.node_resources())
    if model == "openai":
        assert pooled_requests == serial_requests > 0  # every request once, none twice
        assert auth == {f"Bearer {SECRET}"}  # the key reached the workers on the other nodes
        for path in cluster.ray_files():  # ... and no file Ray wrote, on any node
            try:
                data = path.read_bytes()
            except OSError:
                continue
            assert SECRET.encode() not in data, f"API key in Ray's {path}"
        assert SECRET not in done.stdout + done.stderr
        # Nor what the dashboard shows: the GCS's actor, job, node and worker tables and the
        # task events (the timeline), as a driver of its own reads them.
        records = cluster.ask(
            "repr(ray._private.state.actors()) + repr(ray._private.state.jobs()) + repr(ray.nodes())"
            " + repr(ray._private.state.workers()) + repr(ray.timeline())"
        )
        assert "ChatWorker" in records and SECRET not in records


# ------------------------------------------------------------ 2. a cluster-wide rate limiter


LIMITED_DRIVER = """
import json, sys
from promptopt.pool import RateLimit, RayBackend
from promptopt.types import GenerationRequest, Message
import ray
pool = RayBackend.openai("plus", base_url=sys.argv[1], workers=2, concurrency=8, chunk_size=2,
                         ray_address=sys.argv[2], resources={"worker_node": 0.6},
                         rate_limit=RateLimit(requests_per_minute=600, burst_s=0.5))
nodes = ray.get([s.actor.node_id.remote() for s in pool._slots])
out = pool.generate([GenerationRequest(messages=(Message("user", f"Q: {i}+1?"),), max_tokens=8)
                     for i in range(60)])
pool.close()
print("RESULT " + json.dumps({"ok": sum(c.ok for c in out), "nodes": nodes}))
"""


def test_the_rate_limit_holds_across_nodes(cluster: Any) -> None:
    # Two workers that each need 0.6 of a node's worker_node: one on each worker node. Under a
    # limit of 600 requests a minute (10/s, half a second's worth at once), no window of the
    # server's arrivals may hold more than the rate allows; each worker alone would keep the
    # rate too, so the two together would double it without the one shared limiter.
    with FakeOpenAIServer(respond, api_key=SECRET) as server:
        env = {**os.environ, **cluster.auth_env(), "PYTHONPATH": str(REPO), "OPENAI_API_KEY": SECRET}
        done = subprocess.run(
            [sys.executable, "-c", LIMITED_DRIVER, server.base_url, cluster.address],
            cwd=cluster.cwd, env=env, capture_output=True, text=True, timeout=300,
        )  # fmt: skip
        arrivals = sorted(r.received_at for r in server.chat_requests)
    lines = [x for x in done.stdout.splitlines() if x.startswith("RESULT ")]
    assert done.returncode == 0 and lines, done.stderr[-3000:]
    result = json.loads(lines[-1][7:])
    assert result["ok"] == 60 and len(arrivals) == 60
    assert len(set(result["nodes"])) == 2 and set(result["nodes"]) <= worker_nodes(cluster)
    # Booked by chunks of 2 with a tolerance of 0.5 s (5 requests, rounded up to chunks):
    # within any window of w seconds at most 10 w + 6 requests arrive.
    for window in (1.0, 2.0, 3.0):
        busiest = max(sum(1 for t in arrivals if start <= t < start + window) for start in arrivals)
        assert busiest <= 10 * window + 6, (window, busiest)
    per_minute = 60 * (len(arrivals) - 1) / (arrivals[-1] - arrivals[0])
    assert per_minute <= 600 * 1.25, per_minute  # the burst, then the rate


# ------------------------------------------------------------ 3. faults of a cluster


def wait_for_requests(server: FakeOpenAIServer, n: int, process: Any, timeout: float = 300) -> None:
    deadline = time.monotonic() + timeout
    while server.chat_request_count < n:
        assert process.poll() is None, process.communicate()[1][-3000:]
        assert time.monotonic() < deadline, "the search sent no requests"
        time.sleep(0.1)


def wait_for_stored_results(url: str, process: Any, timeout: float = 300) -> None:
    deadline = time.monotonic() + timeout
    while True:
        with Store(url) as store:
            runs = [r for r in store.list_runs() if r.kind == "search"]
            if runs and store.get_evaluations(runs[0].id):
                return
        assert process.poll() is None, process.communicate()[1][-3000:]
        assert time.monotonic() < deadline, "the search stored nothing"
        time.sleep(0.5)


def test_a_worker_node_lost_mid_search_loses_and_duplicates_nothing(
    cluster: Any, pg_url: str, workdir: Path, tmp_path: Path
) -> None:
    with FakeOpenAIServer(respond, api_key=SECRET) as quick:
        spec = ["--model", "openai/plus", "--base-url", quick.base_url]
        serial = outcome(
            run_search(workdir, f"sqlite:///{tmp_path / 'serial.db'}", spec, env=dict(os.environ))
        )
        asked = quick.chat_request_count
    # One second a request, so that the search is still running when the node goes.
    with FakeOpenAIServer(respond, api_key=SECRET, latency_s=1.0) as slow:
        spec = ["--model", "openai/plus", "--base-url", slow.base_url]
        search = start_search(workdir, pg_url, spec, env=cluster.driver_env(),
                              extra=["--workers", "2", "--ray-address", "auto", "--ray-resources", ON_WORKER_NODES])  # fmt: skip
        try:
            wait_for_requests(slow, 8, search)
            hosts = cluster.nodes_running("ray::ChatWorker")
            assert hosts and all(h.startswith("worker-") for h in hosts), hosts
            cluster.stop_node(hosts[0])  # its actors die with it; Ray restarts them on the other
            out, err = search.communicate(timeout=600)
        finally:
            if search.poll() is None:
                search.kill()
            cluster.start_worker(hosts[0])  # the cluster as it was, for the tests after this one
        sent = slow.chat_request_count
    assert search.returncode == 0, err[-4000:]
    pooled = json.loads(out)
    # The spend (calls, tokens) is the serial run's: each request the search asked for counted once.
    same_search(pooled, serial, attempts=False)
    assert rows(pg_url, pooled["run_id"]) == rows(f"sqlite:///{tmp_path / 'serial.db'}", serial["run_id"])
    # Requests in flight on the lost node were sent again: the provider saw some twice, at most
    # what the pool lets out at once (2 workers x 32 x backlog 2); model_calls counts the
    # attempts, the retried ones included.
    extra = (sent - asked, pooled["model_calls"] - serial["model_calls"])
    assert 0 <= extra[0] <= 128 and extra[1] >= 0, extra
    print(f"worker node lost: {extra[0]} requests sent again, {extra[1]} model calls retried")


@pytest.mark.parametrize("address", ["auto", "client"])
def test_losing_the_head_interrupts_the_run_and_resume_finishes_it(
    cluster: Any, pg_url: str, workdir: Path, tmp_path: Path, address: str
) -> None:
    with FakeOpenAIServer(respond, api_key=SECRET) as quick:
        spec = ["--model", "openai/plus", "--base-url", quick.base_url]
        serial = outcome(
            run_search(workdir, f"sqlite:///{tmp_path / 'serial.db'}", spec, env=dict(os.environ))
        )
    with FakeOpenAIServer(respond, api_key=SECRET, latency_s=1.0) as slow:
        spec = ["--model", "openai/plus", "--base-url", slow.base_url]
        ray_address = "auto" if address == "auto" else cluster.client_address
        env = cluster.driver_env() if address == "auto" else {**os.environ, **cluster.auth_env()}
        search = start_search(workdir, pg_url, spec, env=env,
                              extra=["--workers", "2", "--ray-address", ray_address, "--ray-resources", ON_WORKER_NODES])  # fmt: skip
        try:
            wait_for_requests(slow, 8, search)
            wait_for_stored_results(pg_url, search)
            for name in reversed(list(cluster.nodes)):  # the whole cluster goes, head included
                cluster.stop_node(name)
            out, err = search.communicate(timeout=120)  # Ray alone would wait 60 s, then kill it
        finally:
            if search.poll() is None:
                search.kill()
        assert search.returncode != 0 and "lost the Ray cluster" in err, err[-3000:]
        with Store(pg_url) as store:
            (record,) = [r for r in store.list_runs() if r.kind == "search"]
        assert record.status == "interrupted", record.status
        stored = len(rows(pg_url, record.id))
        # The cluster is back (same address); the run continues where it stopped.
        cluster.start()
        cluster.wait_for_nodes(3)
        if address == "client":
            cluster.wait_for_client()
        env = {**env, "PYTHONPATH": str(REPO), "OPENAI_API_KEY": SECRET}
        done = subprocess.run(
            [sys.executable, "-c", "from promptopt.cli import main; main()", "search", "--resume", record.id,
             "--db", pg_url, "--json", "--no-progress"],
            cwd=tmp_path, env=env, capture_output=True, text=True, timeout=600,
        )  # fmt: skip
        resumed = outcome(done)
    assert resumed["run_id"] == record.id and run_status(pg_url, record.id) == "finished"
    assert rows(pg_url, record.id) == rows(f"sqlite:///{tmp_path / 'serial.db'}", serial["run_id"])
    assert stored > 0  # what the interrupted run stored was kept, and used
    for key in ("winner", "winner_prompt", "leaderboard", "test"):
        assert resumed[key] == serial[key], key
