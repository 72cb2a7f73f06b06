"""Fixed-prompt baselines on GSM8K: the scores an optimized prompt has to beat.

(a) a plain instruction, no chain of thought; (b) zero-shot CoT "Let's think step by
step."; (c) 8-shot CoT with worked solutions from the train split. Greedy decoding.
For each: accuracy with 95% CI, tokens per example, wall time, and how often the model
answered with code or an invented output block (the coder models tend to).

    python benchmarks/baselines.py --data-dir ../shared/data --model qwen2.5-coder-1.5b --limit 200

Everything goes through ``promptopt.evaluate`` (so it is stored and cached: a rerun is
answered from the cache — pass ``--db`` to a fresh file for timings).
"""

from __future__ import annotations

import argparse
import json
import re
import sys
import time
from pathlib import Path

RESULTS = Path(__file__).resolve().parent / "results"
CODE = re.compile(r"```(?:python|py)\b|^\s*def \w+\(|^\s*print\(", re.MULTILINE)
OUTPUT_BLOCK = re.compile(r"```(?:output|text)?\s*\n[^`]*\n```\s*$|^Output:", re.MULTILINE | re.IGNORECASE)

BASELINES = {
    "plain": {"cot": None, "shots": 0},
    "zero-shot CoT": {"cot": "Let's think step by step.", "shots": 0},
    "8-shot CoT": {"cot": "Let's think step by step.", "shots": 8},
}


def main(argv: list[str] | None = None) -> int:
    import promptopt
    from promptopt.backends import make_backend
    from promptopt.evaluation import make_candidate

    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--task", default="gsm8k")
    parser.add_argument("--data-dir", default=None)
    parser.add_argument("--model", default="qwen2.5-coder-1.5b")
    parser.add_argument("--limit", type=int, default=200, help="the first N test items")
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--max-new-tokens", type=int, default=400)
    parser.add_argument("--only", nargs="*", default=list(BASELINES), choices=list(BASELINES))
    parser.add_argument("--db", default=str(RESULTS / "baselines.db"))
    args = parser.parse_args(argv)
    RESULTS.mkdir(exist_ok=True)

    task = promptopt.get_task(args.task, args.data_dir)
    backend = make_backend(args.model, batch_size=args.batch_size)
    rows = []
    for name in args.only:
        options = BASELINES[name]
        candidate = make_candidate(task, max_tokens=args.max_new_tokens, **options)  # type: ignore[arg-type]
        started = time.perf_counter()
        report = promptopt.evaluate(task, candidate, backend, split="test", limit=args.limit, db=args.db,
                                    batch_size=args.batch_size)  # fmt: skip
        outputs = [s.raw_output for r in report.results for s in r.samples]
        row = {
            "baseline": name,
            "candidate": candidate.hash,
            "n": report.n,
            "accuracy": report.accuracy,
            "ci95": [report.ci_low, report.ci_high],
            "tokens_in_per_example": report.tokens_in_per_example,
            "tokens_out_per_example": report.tokens_out_per_example,
            "calls": report.calls,
            "cache_hits": report.cache_hits,
            "wall_s": time.perf_counter() - started,
            "code_answers": sum(1 for o in outputs if CODE.search(o)) / max(1, len(outputs)),
            "output_blocks": sum(1 for o in outputs if OUTPUT_BLOCK.search(o)) / max(1, len(outputs)),
            "no_answer": sum(1 for r in report.results if r.answer is None) / max(1, report.n),
            "run_id": report.run_id,
        }
        rows.append(row)
        print(json.dumps(row), flush=True)
    print()
    print(f"{task.name} test[:{args.limit}] · {backend.model_id} · greedy")
    print(f"{'baseline':<15} {'accuracy':>9} {'95% CI':>15} {'tok in/ex':>10} {'tok out/ex':>11} {'wall s':>8} "
          f"{'code':>6} {'out-block':>9} {'no answer':>9}")  # fmt: skip
    for r in rows:
        ci = r["ci95"]
        print(f"{r['baseline']:<15} {r['accuracy']:>9.1%} {ci[0]:>7.1%}–{ci[1]:<7.1%} {r['tokens_in_per_example']:>10.0f} "
              f"{r['tokens_out_per_example']:>11.0f} {r['wall_s']:>8.0f} {r['code_answers']:>6.1%} "
              f"{r['output_blocks']:>9.1%} {r['no_answer']:>9.1%}")  # fmt: skip
    out = RESULTS / f"baselines_{backend.model_id.replace('/', '_')}.json"
    out.write_text(
        json.dumps(
            {"task": task.name, "model": backend.model_id, "limit": args.limit, "rows": rows}, indent=1
        )
    )
    print(f"written {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
