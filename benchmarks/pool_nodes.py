"""Searches on a Ray cluster of 1 worker node against 2, on one machine.

    nice -n 10 python benchmarks/pool_nodes.py

A real multi-node Ray on loopback (:class:`promptopt.testing.ray_cluster.LocalCluster`: a
head of 1 CPU plus 1 or 2 worker nodes of 1 CPU each, every node a ``ray start`` process)
and a loopback OpenAI-compatible server answering after 100 ms. The same search runs three
times, each as the CLI in a fresh process: serially without Ray (``--concurrency 8``), then
with ``--ray-address auto`` (the driver on the head) and one model worker per worker node
(``--ray-resources '{"worker_node": 0.6}'``: two cannot share a node), 8 requests in flight
each. All three store the same rows (checked here).

Per row: wall time of the search (``wall_s`` as the search reports it, so Ray's start-up and
the process start are left out), model calls, throughput (calls / wall), and overhead per
evaluation: wall time per call minus what the server's latency costs at the concurrency
used (100 ms / in flight), i.e. what the engine adds per call, stages waiting for their
slowest candidate included. One run of each (the machine is shared: the load average is
printed with it). Writes ``benchmarks/results/pool-nodes-<time>.json``.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))

from promptopt.testing.openai_server import FakeOpenAIServer  # noqa: E402
from promptopt.testing.ray_cluster import LocalCluster  # noqa: E402

LATENCY_S = 0.1
CONCURRENCY = 8
SEARCH = ["--dev-size", "40", "--test-size", "40", "--proposals", "6", "--rounds", "1", "--shots", "0"]


def respond(request: dict[str, Any]) -> str:
    """Right on some questions depending on the prompt (so that candidates differ)."""
    text = json.dumps(request["messages"], sort_keys=True)
    digest = int(hashlib.sha256(text.encode()).hexdigest()[:8], 16)
    found = re.findall(r"Q: (\d+)\+1\?", request["messages"][-1]["content"])
    if not found:
        return f"Instruction: Add one, way {digest % 997}."
    n = int(found[-1])
    return f"The answer is {n + 1 if digest % 3 else n}."


def write_task(root: Path) -> None:
    (root / "data").mkdir()
    lines = [json.dumps({"question": f"{i}+1?", "answer": str(i + 1)}) for i in range(200)]
    (root / "data" / "train.jsonl").write_text("\n".join(lines[:120]) + "\n")
    (root / "data" / "test.jsonl").write_text("\n".join(lines[120:]) + "\n")
    task = {"name": "plus-one", "input_fields": ["question"], "template": "Q: {question}", "extractor": "number",
            "source": {"type": "records", "files": {"train": "train.jsonl", "test": "test.jsonl"},
                       "target_field": "answer"}}  # fmt: skip
    (root / "task.yaml").write_text(json.dumps(task))


def search(root: Path, base_url: str, db: str, env: dict[str, str], extra: list[str]) -> dict[str, Any]:
    command = [sys.executable, "-c", "from promptopt.cli import main; main()", "search", "--task", "task.yaml",
               "--data-dir", "data", "--model", "openai/bench", "--base-url", base_url, "--db", db,
               "--concurrency", str(CONCURRENCY), *SEARCH, "--json", "--no-progress", *extra]  # fmt: skip
    env = {**env, "PYTHONPATH": str(HERE.parent), "OPENAI_API_KEY": "sk-bench"}
    done = subprocess.run(command, cwd=root, env=env, capture_output=True, text=True, timeout=1800)
    if done.returncode != 0:
        raise RuntimeError(done.stderr[-3000:])
    return dict(json.loads(done.stdout))


def row(name: str, result: dict[str, Any], in_flight: int) -> dict[str, Any]:
    calls = int(result["model_calls"])
    wall = float(result["wall_s"])
    overhead_ms = 1000 * (wall / calls - LATENCY_S / in_flight)
    return {"setup": name, "in_flight": in_flight, "wall_s": round(wall, 2), "model_calls": calls,
            "calls_per_s": round(calls / wall, 1), "overhead_ms_per_call": round(overhead_ms, 2),
            "winner": result["winner"]}  # fmt: skip


def stored(db: str, run_id: str) -> list[tuple[Any, ...]]:
    from promptopt.store import Store

    with Store(db) as store:
        return sorted(
            (r.candidate_hash, r.split, r.example_id, r.answer) for r in store.get_evaluations(run_id)
        )


def main() -> None:
    argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    ).parse_args()
    result: dict[str, Any] = {"started": time.strftime("%Y-%m-%d %H:%M:%S"), "cpus": os.cpu_count(),
                              "latency_s": LATENCY_S, "load_before": [round(x, 2) for x in os.getloadavg()]}  # fmt: skip
    rows = []
    with (
        tempfile.TemporaryDirectory(prefix="po-nodes-") as tmp,
        FakeOpenAIServer(respond, latency_s=LATENCY_S) as server,
    ):
        root = Path(tmp)
        write_task(root)
        serial_db = f"sqlite:///{root / 'serial.db'}"
        serial = search(root, server.base_url, serial_db, dict(os.environ), [])
        rows.append(row("serial, no Ray", serial, CONCURRENCY))
        for nodes in (1, 2):
            with LocalCluster(worker_nodes=nodes, env={"PYTHONPATH": str(HERE.parent)}) as cluster:
                db = f"sqlite:///{root / f'nodes{nodes}.db'}"
                pooled = search(root, server.base_url, db, cluster.driver_env(),
                                ["--workers", str(nodes), "--ray-address", "auto",
                                 "--ray-resources", '{"worker_node": 0.6}'])  # fmt: skip
                placed = {a["node"] for a in cluster.actors("ChatWorker")}  # one worker on each node
                assert len(placed) == nodes, placed
            assert stored(db, pooled["run_id"]) == stored(serial_db, serial["run_id"]), "rows differ"
            rows.append(row(f"{nodes} worker node{'s' * (nodes > 1)}, {nodes} worker{'s' * (nodes > 1)}",
                            pooled, CONCURRENCY * nodes))  # fmt: skip
    result["rows"] = rows
    result["load_after"] = [round(x, 2) for x in os.getloadavg()]
    print(
        f"{'setup':<28} {'in flight':>9} {'wall s':>7} {'calls':>6} {'calls/s':>8} {'overhead ms/call':>17}"
    )
    for r in rows:
        print(f"{r['setup']:<28} {r['in_flight']:>9} {r['wall_s']:>7} {r['model_calls']:>6} "
              f"{r['calls_per_s']:>8} {r['overhead_ms_per_call']:>17}")  # fmt: skip
    print(f"load average before {result['load_before']}, after {result['load_after']}")
    out = HERE / "results"
    out.mkdir(exist_ok=True)
    path = out / f"pool-nodes-{time.strftime('%Y%m%d-%H%M%S')}.json"
    path.write_text(json.dumps(result, indent=2))
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
