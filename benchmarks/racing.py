"""Racing efficiency: how many evaluations successive halving needs to find the best
candidate, against evaluating every candidate on the whole dev set.

Two steps:

1. ``record`` scores a fixed pool of candidates on every dev example with a real model
   and saves the matrix (candidates × examples, 0/1) as JSON. The pool is the task's own
   instruction, a few hand-written ones, and instructions the model itself writes from
   demos (APE forward generation), so the spread of scores is realistic.
2. ``replay`` races the pool offline over that matrix for many seeds (each seed shuffles
   the pool order and the dev order) and counts the (candidate, example) cells the race
   looked at. Success = the race's winner is the matrix's best, or within 1 point of it.

    python benchmarks/racing.py record --task gsm8k --data-dir ../shared/data \\
        --model qwen2.5-coder-0.5b --candidates 20 --dev-size 60
    python benchmarks/racing.py replay --seeds 200

Timings are not the point here: the counts are deterministic given the matrix.
"""

from __future__ import annotations

import argparse
import json
import random
import sys
import time
from pathlib import Path

RESULTS = Path(__file__).resolve().parent / "results"
HAND_WRITTEN = [
    "",
    "Solve the math word problem.",
    "Answer with a number.",
    "You are a careful mathematician. Solve the problem and state the final number.",
    "Read the problem, compute the answer, and reply with just the final number.",
    "Solve the problem step by step, then give the final answer.",
]


def record(args: argparse.Namespace) -> None:
    from promptopt.backends import make_backend
    from promptopt.evaluation import make_candidate
    from promptopt.evaluator import SerialEvaluator
    from promptopt.executor import Executor
    from promptopt.proposers import Proposer
    from promptopt.session import ModelStack
    from promptopt.store import Store
    from promptopt.tasks import get_task

    task = get_task(args.task, args.data_dir)
    store = Store(args.db)
    backend = ModelStack(make_backend(args.model, batch_size=args.batch_size), store).backend
    proposer = Proposer(backend, task, seed=args.seed)
    texts = list(HAND_WRITTEN)
    round_index = 0
    while len(texts) < args.candidates and round_index < 10:
        for text in proposer.from_demos(args.candidates - len(texts), round_index=round_index):
            if text not in texts:
                texts.append(text)
        round_index += 1
    texts = texts[: args.candidates]
    base = make_candidate(task, cot=args.cot, max_tokens=args.max_new_tokens)
    candidates = [base.__class__(**{**base.to_dict(), "instruction": t}) for t in texts]
    run_id = store.create_run(kind="benchmark", task=task.name, model=backend.model_id,
                              config={"benchmark": "racing", "texts": texts}, dataset_hash=task.dataset_hash)  # fmt: skip
    for candidate in candidates:
        store.add_candidate(run_id, candidate, origin="benchmark")
    evaluator = SerialEvaluator(Executor(task, backend, batch_size=args.batch_size),
                                lambda batch: store.record_evaluations(run_id, batch))  # fmt: skip
    dev = task.examples("dev")[: args.dev_size]
    matrix: list[list[float]] = []
    started = time.perf_counter()
    for index, candidate in enumerate(candidates):
        results = evaluator.evaluate(candidate, dev, "dev")
        matrix.append([r.score or 0.0 for r in results])
        mean = sum(matrix[-1]) / len(dev)
        print(f"[{index + 1}/{len(candidates)}] {mean:6.1%}  {candidate.instruction[:70]!r}  "
              f"({time.perf_counter() - started:.0f} s)", flush=True)  # fmt: skip
    store.finish_run(run_id, "finished")
    RESULTS.mkdir(exist_ok=True)
    out = Path(args.matrix)
    out.write_text(json.dumps({"task": task.name, "model": backend.model_id, "run_id": run_id, "texts": texts,
                               "examples": [e.id for e in dev], "matrix": matrix,
                               "wall_s": time.perf_counter() - started}, indent=1))  # fmt: skip
    print(f"matrix {len(candidates)} × {len(dev)} written to {out}")


def replay(args: argparse.Namespace) -> dict[str, object]:
    from promptopt.racing import rank, successive_halving

    data = json.loads(Path(args.matrix).read_text())
    matrix: list[list[float]] = data["matrix"]
    n_candidates, n_examples = len(matrix), len(matrix[0])
    means = [sum(row) / n_examples for row in matrix]
    best = max(means)
    full_cells = n_candidates * n_examples
    rows = []
    for start in args.starts:
        successes, exact, cells_used = 0, 0, []
        for seed in range(args.seeds):
            rng = random.Random(seed)
            pool = list(range(n_candidates))
            rng.shuffle(pool)
            order = list(range(n_examples))
            rng.shuffle(order)
            asked: set[tuple[int, int]] = set()

            def score(
                candidate: str, n: int, order: list[int] = order, asked: set[tuple[int, int]] = asked
            ) -> list[float | None]:
                index = int(candidate)
                for k in order[:n]:
                    asked.add((index, k))
                return [matrix[index][k] for k in order[:n]]

            # as the search does it: race (keeping top_k), then the best final_top get the whole dev set
            standings = successive_halving(
                [str(c) for c in pool], score, n_examples, start=start, eta=args.eta, keep=args.keep
            )
            finalists = [int(s.candidate) for s in rank(list(standings.values()))[: args.final_top]]
            for finalist in finalists:
                score(str(finalist), n_examples)
            winner = max(finalists, key=lambda c: (means[c], -finalists.index(c)))
            cells_used.append(len(asked))
            if means[winner] >= best - 0.01 + 1e-12:
                successes += 1
            if means[winner] == best:
                exact += 1
        mean_cells = sum(cells_used) / len(cells_used)
        rows.append({"start": start, "eta": args.eta, "mean_cells": mean_cells, "saving": 1 - mean_cells / full_cells,
                     "within_1pt": successes / args.seeds, "exact_best": exact / args.seeds})  # fmt: skip
    print(f"matrix: {data['task']} · {data['model']} · {n_candidates} candidates × {n_examples} dev examples; "
          f"best {best:.1%}, median {sorted(means)[n_candidates // 2]:.1%}, worst {min(means):.1%}")  # fmt: skip
    print(f"full evaluation: {full_cells} evaluations; {args.seeds} seeds per racing schedule")
    print(f"{'start':>5} {'eta':>4} {'evals (mean)':>13} {'fewer':>7} {'within 1 pt':>12} {'exact best':>11}")
    for row in rows:
        print(f"{row['start']:>5} {row['eta']:>4} {row['mean_cells']:>13.1f} {row['saving']:>7.1%} "
              f"{row['within_1pt']:>12.1%} {row['exact_best']:>11.1%}")  # fmt: skip
    result = {
        "matrix": args.matrix,
        "settings": {
            "seeds": args.seeds,
            "starts": args.starts,
            "eta": args.eta,
            "keep": args.keep,
            "final_top": args.final_top,
        },
        "candidates": n_candidates,
        "examples": n_examples,
        "best": best,
        "rows": rows,
    }
    RESULTS.mkdir(exist_ok=True)
    # one file per matrix and race settings, so a run with other options keeps the earlier one
    name = f"racing_replay-{Path(args.matrix).stem}-eta{args.eta:g}-keep{args.keep}-top{args.final_top}.json"
    (RESULTS / name).write_text(json.dumps(result, indent=1))
    print(f"wrote {RESULTS / name}")
    return result


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    sub = parser.add_subparsers(dest="command", required=True)
    rec = sub.add_parser("record", help="score a pool of candidates on every dev example with a real model")
    rec.add_argument("--task", default="gsm8k")
    rec.add_argument("--data-dir", default=None)
    rec.add_argument("--model", default="qwen2.5-coder-0.5b")
    rec.add_argument("--candidates", type=int, default=20)
    rec.add_argument("--dev-size", type=int, default=60)
    rec.add_argument(
        "--cot", default=None, help="chain-of-thought trigger for every candidate (default: none)"
    )
    rec.add_argument("--max-new-tokens", type=int, default=256)
    rec.add_argument("--batch-size", type=int, default=16)
    rec.add_argument("--seed", type=int, default=0)
    rec.add_argument("--db", default=str(RESULTS / "racing.db"))
    rec.add_argument("--matrix", default=str(RESULTS / "racing_matrix.json"))
    rep = sub.add_parser("replay", help="race offline over a recorded matrix for many seeds")
    rep.add_argument("--matrix", default=str(RESULTS / "racing_matrix.json"))
    rep.add_argument("--seeds", type=int, default=200)
    rep.add_argument("--starts", type=int, nargs="+", default=[5, 10, 15])
    rep.add_argument("--eta", type=float, default=2.0)
    rep.add_argument("--keep", type=int, default=2, help="candidates the race keeps (the search's top_k)")
    rep.add_argument("--final-top", type=int, default=3, help="finalists given the whole dev set")
    args = parser.parse_args(argv)
    RESULTS.mkdir(exist_ok=True)
    if args.command == "record":
        record(args)
    else:
        replay(args)


if __name__ == "__main__":
    sys.exit(main())
