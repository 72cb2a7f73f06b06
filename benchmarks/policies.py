"""Search policies compared at equal budget: best dev score against LLM requests spent.

Each policy (``random``, ``tpe``, ``reinforce`` over a search space; ``ape``/``opro`` over
the instruction only) runs a full ``promptopt.search()`` with the same ``--max-calls``
for several seeds, from the task's instruction without chain of thought: a suite command
(``benchmarks/suite.py run --start plain``, its rows in a temporary file unless ``--db``
keeps the store). Per run it records the best-so-far dev score against requests spent
(from the store), the winner's full-dev and held-out test scores, and the requests the
policy needed to reach the *random* baseline's mean final best. It prints a table of
mean ± sd over seeds and writes everything as JSON under ``benchmarks/results/``.

    python benchmarks/policies.py --model fake --seeds 5                      # seconds
    python benchmarks/policies.py --model qwen2.5-coder-0.5b --task gsm8k \\
        --data-dir ../shared/data --seeds 1 --max-calls 300 --dev-size 30 --policies random,tpe

``--model fake`` uses the multi-dimensional fake of the test suite (promptopt/testing/space_fakes.py):
its accuracy depends on chain of thought, number of demos, answer format and
instruction, so the space has a clearly best region. Its numbers say whether a policy
learns; they say nothing about real models.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
RESULTS = REPO / "benchmarks" / "results"


def _spread(values: list[float]) -> str:
    if not values:
        return "–"
    sd = statistics.stdev(values) if len(values) > 1 else 0.0
    return f"{statistics.mean(values):.3f} ± {sd:.3f}"


def suite_argv(args: argparse.Namespace, db: str, out: Path) -> list[str]:
    """The suite command of these runs: the policies from a plain start (the task's
    instruction, no chain of thought), ``--seeds`` seeds, one cap."""
    command = [
        "run", "--model", args.model, "--tasks", args.task, "--entries", args.policies,
        "--seeds", ",".join(str(s) for s in range(args.seeds)), "--max-calls", str(args.max_calls),
        "--dev-size", str(args.dev_size), "--test-size", str(args.test_size), "--proposals", str(args.n_proposals),
        "--rounds", str(args.rounds), "--race-start", str(args.race_start), "--batch-size", str(args.batch_size),
        "--max-new-tokens", str(args.max_new_tokens), "--start", "plain", "--db", db, "--out", str(out), "--resume",
    ]  # fmt: skip
    if args.space is not None:
        command += ["--space", args.space]
    if args.data_dir:
        command += ["--data-dir", args.data_dir]
    return command


def run_of(row: dict[str, Any], db: str, dev_size: int) -> dict[str, Any]:
    """One search as this benchmark reports it, from the suite's row and its store."""
    from promptopt.leaderboard import best_by_calls
    from promptopt.store import Store

    search = row["search"]
    with Store(db) as store:
        # best so far among candidates seen on at least half of dev (8-example scores are noise)
        curve = best_by_calls(store, search["run_id"], min_n=max(1, dev_size // 2))
    return {
        "policy": row["entry"], "seed": row["seed"], "run_id": search["run_id"], "search_calls": search["calls"],
        "best_dev_during_search": max((b for _, b in curve), default=0.0), "winner_dev": search["winner_dev"],
        "winner_test": row["test"]["accuracy"], "test_n": row["test"]["n"], "curve": curve, "winner": row["prompt"],
        "policy_state": {k: v for k, v in search["policy_state"].items() if k in ("preferred", "best_trial", "trials")},
        "wall_s": row["wall_s"],
    }  # fmt: skip


def calls_to_reach(curve: list[tuple[int, float]], target: float) -> int | None:
    for calls, best in curve:
        if best >= target - 1e-9:
            return calls
    return None


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--model", default="fake", help="fake, or a model spec (qwen2.5-coder-0.5b, ...)")
    parser.add_argument("--task", default=None, help="default: gsm-symbolic for fake, gsm8k otherwise")
    parser.add_argument("--data-dir", default=None)
    parser.add_argument("--space", default=None, help="search space (default: the task's own, else default)")
    parser.add_argument("--policies", default="random,tpe,reinforce,ape")
    parser.add_argument("--seeds", type=int, default=5)
    parser.add_argument("--max-calls", type=int, default=1500)
    parser.add_argument("--dev-size", type=int, default=40)
    parser.add_argument("--test-size", type=int, default=100)
    parser.add_argument("--n-proposals", type=int, default=6)
    parser.add_argument(
        "--rounds", type=int, default=12, help="the budget, not the rounds, should end the search"
    )
    parser.add_argument("--race-start", type=int, default=8)
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--max-new-tokens", type=int, default=384)
    parser.add_argument("--db", default=None, help="database (default: a fresh SQLite file in a temp dir)")
    args = parser.parse_args(argv)
    if args.task is None:
        args.task = "gsm-symbolic" if args.model == "fake" else "gsm8k"
    policies = [p.strip() for p in args.policies.split(",") if p.strip()]
    sys.path.insert(0, str(REPO))
    from benchmarks import suite

    with tempfile.TemporaryDirectory() as tmp:
        db = args.db or f"sqlite:///{Path(tmp) / 'policies.db'}"
        out = Path(tmp) / "policies.jsonl"
        command = suite_argv(args, db, out)
        print("python benchmarks/suite.py " + " ".join(command), file=sys.stderr, flush=True)
        if suite.main(command) != 0:
            raise SystemExit("the suite run failed")
        rows = [r for r in suite.read_rows(out) if r.get("status") == "ok"]
        runs = [run_of(r, db, args.dev_size) for r in rows]
        for run in runs:
            print(f"  {run['policy']:<9} seed {run['seed']}: best dev {run['best_dev_during_search']:.3f}, winner dev "
                  f"{run['winner_dev']:.3f} test {run['winner_test']:.3f}, {run['search_calls']} calls, "
                  f"{run['wall_s']:.0f} s", file=sys.stderr, flush=True)  # fmt: skip
    random_final = [r["best_dev_during_search"] for r in runs if r["policy"] == "random"]
    target = statistics.mean(random_final) if random_final else None
    rows = []
    for policy in policies:
        mine = [r for r in runs if r["policy"] == policy]
        reach = [calls_to_reach(r["curve"], target) for r in mine] if target is not None else []
        reached = [c for c in reach if c is not None]
        rows.append({
            "policy": policy,
            "best_dev": _spread([r["best_dev_during_search"] for r in mine]),
            "winner_dev": _spread([r["winner_dev"] for r in mine]),
            "winner_test": _spread([r["winner_test"] for r in mine]),
            "calls": _spread([float(r["search_calls"]) for r in mine]),
            "reach_random": (f"{statistics.median(reached):.0f} ({len(reached)}/{len(mine)})" if reached else "–"),
        })  # fmt: skip
    header = [
        "policy",
        "best dev (search)",
        "winner dev",
        "winner test",
        "search calls",
        "calls to random's final",
    ]
    keys = ["policy", "best_dev", "winner_dev", "winner_test", "calls", "reach_random"]
    widths = [max(len(h), *(len(str(r[k])) for r in rows)) for h, k in zip(header, keys, strict=True)]
    print(f"{args.task} · {args.model} · {args.seeds} seeds · max {args.max_calls} calls · dev {args.dev_size} · "
          f"test {args.test_size} · mean ± sd over seeds")  # fmt: skip
    print("  ".join(h.ljust(w) for h, w in zip(header, widths, strict=True)))
    for row in rows:
        print("  ".join(str(row[k]).ljust(w) for k, w in zip(keys, widths, strict=True)))
    if target is not None:
        print(f"random's mean final best dev: {target:.3f}; 'calls to random's final' is the median over the seeds "
              "that reached it (how many did)")  # fmt: skip
    RESULTS.mkdir(parents=True, exist_ok=True)
    out = RESULTS / f"policies-{args.model.replace('/', '_')}-{time.strftime('%Y%m%d-%H%M%S')}.json"
    out.write_text(json.dumps({"args": vars(args), "rows": rows, "runs": runs}, indent=2, default=str))
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
