"""Leaderboard at scale: time the leaderboard query on a database with a million
evaluation rows.

Generates a store (SQLite by default, any SQLAlchemy URL with --db) holding ``--runs``
search runs of ``--candidates`` candidates each, ``--rows`` evaluation rows in all (dev
for every candidate, dev + test for two per run, about 73% correct), inserted with Core
executemany in one transaction per run. Then times, ``--repeats`` times each after one
untimed warm-up: the whole leaderboard top 20, filtered by task, filtered by model,
filtered by run, and one candidate's scores (what export reads).

    python benchmarks/leaderboard_scale.py                      # 1,000,000 rows, SQLite
    python benchmarks/leaderboard_scale.py --db postgresql+psycopg://...   # a fresh, empty database

Prints a table and writes benchmarks/results/leaderboard_scale.json.
"""

from __future__ import annotations

import argparse
import json
import platform
import random
import statistics
import sys
import time
from datetime import datetime, timezone
from pathlib import Path

RESULTS = Path(__file__).resolve().parent / "results"
TASKS = ("gsm8k", "bbh:object_counting")
MODELS = ("openai/gpt-4o-mini", "qwen2.5-coder-1.5b")


def generate(store, runs: int, candidates: int, rows: int, seed: int) -> dict[str, object]:  # type: ignore[no-untyped-def]
    from promptopt.store.queries import bulk_insert
    from promptopt.types import Candidate, canonical_json

    rng = random.Random(seed)
    per_candidate = rows // (runs * candidates)
    now = datetime.now(timezone.utc)
    run_ids = []
    started = time.perf_counter()
    for run_index in range(runs):
        task, model = TASKS[run_index % len(TASKS)], MODELS[(run_index // len(TASKS)) % len(MODELS)]
        run_id = store.create_run(kind="search", task=task, model=model, config={"policy": "ape", "task": task},
                                  seed=run_index, dataset_hash="bench")  # fmt: skip
        run_ids.append(run_id)
        cands = [
            Candidate(instruction=f"Instruction {run_index}-{i}: solve it carefully.")
            for i in range(candidates)
        ]
        evaluations = []
        for index, candidate in enumerate(cands):
            skill = rng.uniform(0.55, 0.9)
            test_rows = per_candidate // 2 if index < 2 else 0
            for row in range(per_candidate):
                split = "test" if row < test_rows else "dev"
                failed = rng.random() < 0.01
                evaluations.append({
                    "run_id": run_id, "candidate_hash": candidate.hash, "split": split, "example_id": f"{split}-{row:05d}",
                    "answer": "42", "gold": "42", "score": None if failed else float(rng.random() < skill),
                    "error": "HTTP 503" if failed else None, "tokens_in": rng.randint(150, 400),
                    "tokens_out": rng.randint(20, 250), "latency_s": 0.5, "created_at": now,
                })  # fmt: skip
        bulk_insert(
            store,
            candidates=[{"hash": c.hash, "spec": canonical_json(c.to_dict()), "created_at": now} for c in cands],
            run_candidates=[{"run_id": run_id, "candidate_hash": c.hash, "origin": "ape", "parent_hash": None,
                             "created_at": now} for c in cands],
            evaluations=evaluations,
        )  # fmt: skip
        store.finish_run(run_id, "finished", {"winner": cands[0].hash})
    return {
        "run_ids": run_ids,
        "insert_s": time.perf_counter() - started,
        "rows": per_candidate * runs * candidates,
    }


def timed(function, repeats: int) -> dict[str, float]:  # type: ignore[no-untyped-def]
    function()  # warm-up: page cache and SQLAlchemy's statement cache
    times = []
    for _ in range(repeats):
        started = time.perf_counter()
        function()
        times.append(time.perf_counter() - started)
    return {
        "median_s": statistics.median(times),
        "min_s": min(times),
        "max_s": max(times),
        "stdev_s": statistics.stdev(times) if len(times) > 1 else 0.0,
    }


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--runs", type=int, default=20)
    parser.add_argument("--candidates", type=int, default=50, help="candidates per run")
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--db", default=None, help="SQLAlchemy URL of an empty database (default: a new SQLite file "
                        "under benchmarks/results/, deleted afterwards unless --keep)")  # fmt: skip
    parser.add_argument("--keep", action="store_true", help="keep the generated SQLite file")
    args = parser.parse_args()

    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
    from promptopt.leaderboard import candidate_scores, leaderboard
    from promptopt.store import Store

    RESULTS.mkdir(parents=True, exist_ok=True)
    path = RESULTS / "leaderboard_scale.db"
    if args.db is None:
        for suffix in ("", "-wal", "-shm"):
            Path(str(path) + suffix).unlink(missing_ok=True)
    url = args.db or f"sqlite:///{path}"
    store = Store(url)
    generated = generate(store, args.runs, args.candidates, args.rows, args.seed)
    run_ids = generated["run_ids"]
    assert isinstance(run_ids, list)
    top = leaderboard(store, top=1)[0]
    cases = {
        "top 20, all runs": lambda: leaderboard(store, top=20),
        "top 20, --task gsm8k": lambda: leaderboard(store, task="gsm8k", top=20),
        "top 20, --model": lambda: leaderboard(store, model=MODELS[0], top=20),
        "one run, all candidates": lambda: leaderboard(store, run=run_ids[len(run_ids) // 2], top=None),
        "one candidate's scores": lambda: candidate_scores(store, top.run_id, top.candidate),
    }
    results = {name: timed(fn, args.repeats) for name, fn in cases.items()}
    store.close()
    print(f"{generated['rows']:,} evaluation rows, {args.runs} runs × {args.candidates} candidates; "
          f"{store.display_url.split(':', 1)[0]}; inserted in {generated['insert_s']:.1f} s")  # fmt: skip
    print(f"{'query':<26} {'median':>9} {'min':>9} {'max':>9}   (n={args.repeats} after a warm-up)")
    for name, r in results.items():
        print(
            f"{name:<26} {r['median_s'] * 1000:>7.0f}ms {r['min_s'] * 1000:>7.0f}ms {r['max_s'] * 1000:>7.0f}ms"
        )
    out = {
        "benchmark": "leaderboard_scale",
        "rows": generated["rows"], "runs": args.runs, "candidates_per_run": args.candidates,
        "database": store.display_url.split(":", 1)[0], "insert_s": generated["insert_s"],
        "repeats": args.repeats, "queries": results,
        "machine": {"python": platform.python_version(), "platform": platform.platform(),
                    "sqlite": __import__("sqlite3").sqlite_version},
        "date": datetime.now(timezone.utc).isoformat(timespec="seconds"),
    }  # fmt: skip
    (RESULTS / "leaderboard_scale.json").write_text(json.dumps(out, indent=1))
    print(f"wrote {RESULTS / 'leaderboard_scale.json'}")
    if args.db is None and not args.keep:
        for suffix in ("", "-wal", "-shm"):
            Path(str(path) + suffix).unlink(missing_ok=True)


if __name__ == "__main__":
    main()
