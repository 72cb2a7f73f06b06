"""A real search on GSM8K: does the found prompt beat zero-shot chain of thought on
held-out test data?

Each policy starts from zero-shot CoT ("Let's think step by step."), searches the
instruction (or, with ``--search cot_trigger``, the trigger) on dev drawn from train,
and its winner is compared with the starting prompt on the same test items (paired
test). Everything runs through ``promptopt.search`` and is stored in ``--db``; the
response cache makes a rerun (or a resumed run) cheap.

    python benchmarks/search_gsm8k.py --data-dir ../shared/data --model qwen2.5-coder-1.5b \\
        --policies ape opro --budget light --test-size 200
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

RESULTS = Path(__file__).resolve().parent / "results"


def main(argv: list[str] | None = None) -> int:
    from promptopt.controller import SearchConfig, SearchResult, search
    from promptopt.evaluation import make_candidate
    from promptopt.tasks import get_task

    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--task", default="gsm8k")
    parser.add_argument("--data-dir", default=None)
    parser.add_argument("--model", default="qwen2.5-coder-1.5b")
    parser.add_argument("--policies", nargs="+", default=["ape", "opro"])
    parser.add_argument(
        "--search", dest="slot", default="instruction", choices=["instruction", "cot_trigger"]
    )
    parser.add_argument("--budget", default="light", choices=["light", "medium", "heavy"])
    parser.add_argument("--dev-size", type=int, default=None)
    parser.add_argument("--test-size", type=int, default=200)
    parser.add_argument("--max-calls", type=int, default=None)
    parser.add_argument("--max-new-tokens", type=int, default=400)
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--db", default=str(RESULTS / "search_gsm8k.db"))
    args = parser.parse_args(argv)
    RESULTS.mkdir(exist_ok=True)

    from promptopt.budget import Budget

    task = get_task(args.task, args.data_dir)
    base = make_candidate(task, cot="Let's think step by step.", max_tokens=args.max_new_tokens)
    rows = []
    for policy in args.policies:
        config = SearchConfig.from_preset(
            args.budget, task=args.task, data_dir=args.data_dir, model=args.model, base=base, policy=policy,
            slot=args.slot, dev_size=args.dev_size, test_size=args.test_size, seed=args.seed,
            batch_size=args.batch_size, budget=Budget(max_calls=args.max_calls),
        )  # fmt: skip
        started = time.perf_counter()
        result = search(config, db=args.db)
        assert isinstance(result, SearchResult)
        test = result.test
        row = {
            "policy": policy,
            "run_id": result.run_id,
            "winner": result.winner.to_dict(),
            "winner_dev": result.leaderboard[0].mean if result.leaderboard else None,
            "test_n": test["n"],
            "winner_test": test["winner"],
            "baseline_test": test["baseline"],
            "difference": test["difference"],
            "significant": result.significant,
            "search_calls": result.spent["calls"],
            "final_calls": result.final_calls,
            "model_calls": result.model_calls,
            "cache_hits": result.cache_hits,
            "tokens": result.spent["tokens_in"] + result.spent["tokens_out"],
            "wall_s": time.perf_counter() - started,
            "stopped": result.stopped_reason,
        }
        rows.append(row)
        print(json.dumps(row), flush=True)
    print()
    print(
        f"{args.task} · {args.model} · budget {args.budget} · start: zero-shot CoT · test n={args.test_size}"
    )
    print(
        f"{'policy':<7} {'start test':>16} {'winner test':>18} {'diff':>7} {'p':>8} {'calls':>6} {'wall s':>7}  winner"
    )
    for r in rows:
        b, w, d = r["baseline_test"], r["winner_test"], r["difference"]
        text = r["winner"]["instruction"] if args.slot == "instruction" else r["winner"]["cot_trigger"]
        print(f"{r['policy']:<7} {b['accuracy']:>6.1%} ({b['ci95'][0]:.0%}–{b['ci95'][1]:.0%}) "
              f"{w['accuracy']:>8.1%} ({w['ci95'][0]:.0%}–{w['ci95'][1]:.0%}) {d['diff']:>+7.1%} {d['p_value']:>8.3g} "
              f"{r['search_calls'] + r['final_calls']:>6} {r['wall_s']:>7.0f}  {text!r}")  # fmt: skip
    # one file per model, policies and slot, so that running APE and OPRO one after the
    # other (as the README does) keeps both results
    model = args.model.replace("/", "_")
    out = RESULTS / f"search_gsm8k-{model}-{'-'.join(args.policies)}-{args.slot}.json"
    out.write_text(json.dumps({"args": vars(args), "rows": rows}, indent=1))
    print(f"written {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
