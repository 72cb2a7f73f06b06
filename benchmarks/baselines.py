"""Fixed-prompt baselines on GSM8K: the scores an optimized prompt has to beat.

(a) a plain instruction, no chain of thought; (b) zero-shot CoT "Let's think step by
step."; (c) 8-shot CoT with worked solutions from the train split; (d) 3-shot CoT: the
task's own worked demos where it ships them (BBH's 3-shot CoT prompt), else three from
the train split. Greedy decoding.
For each: accuracy with 95% CI, tokens per example, wall time, and how often the model
answered with code or an invented output block (the coder models tend to).

    python benchmarks/baselines.py --data-dir ../shared/data --model qwen2.5-coder-1.5b --limit 200

A suite command (``benchmarks/suite.py run --entries plain,zero-shot-cot,8-shot-cot``):
this script keeps its flags, runs those cells there (rows in
``benchmarks/results/baselines-<model>.jsonl``, a rerun continues it) and prints its
table from the rows. Everything goes through ``promptopt.evaluate`` (so it is stored and
cached: a rerun is answered from the cache — pass ``--db`` to a fresh file for timings).
"""

from __future__ import annotations

import argparse
import re
import sys
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
RESULTS = REPO / "benchmarks" / "results"
CODE = re.compile(r"```(?:python|py)\b|^\s*def \w+\(|^\s*print\(", re.MULTILINE)
OUTPUT_BLOCK = re.compile(r"```(?:output|text)?\s*\n[^`]*\n```\s*$|^Output:", re.MULTILINE | re.IGNORECASE)

BASELINES = {
    "plain": {"cot": None, "shots": 0},
    "zero-shot CoT": {"cot": "Let's think step by step.", "shots": 0},
    "8-shot CoT": {"cot": "Let's think step by step.", "shots": 8},
    "3-shot CoT": {"cot": "Let's think step by step.", "shots": 3},
}


ENTRY_OF = {
    "plain": "plain",
    "zero-shot CoT": "zero-shot-cot",
    "8-shot CoT": "8-shot-cot",
    "3-shot CoT": "3-shot-cot",
}  # the suite's names
# What this script runs by default: the baselines of its published GSM8K table.
PUBLISHED = ("plain", "zero-shot CoT", "8-shot CoT")


def suite_argv(argv: list[str] | None = None) -> list[str]:
    """The suite command this script's flags stand for."""
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--task", default="gsm8k")
    parser.add_argument("--data-dir", default=None)
    parser.add_argument("--model", default="qwen2.5-coder-1.5b")
    parser.add_argument("--limit", type=int, default=200, help="the first N test items")
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--max-new-tokens", type=int, default=400)
    parser.add_argument("--only", nargs="*", default=list(PUBLISHED), choices=list(BASELINES))
    parser.add_argument("--db", default=str(RESULTS / "baselines.db"))
    args = parser.parse_args(argv)
    db = args.db if "://" in args.db else f"sqlite:///{args.db}"
    return [
        "run", "--tasks", args.task, "--entries", ",".join(ENTRY_OF[name] for name in args.only),
        "--model", args.model, "--test-size", str(args.limit), "--batch-size", str(args.batch_size),
        "--max-new-tokens", str(args.max_new_tokens), "--db", db, "--resume",
        "--out", str(RESULTS / f"baselines-{args.model.replace('/', '_')}.jsonl"),
        *(["--data-dir", args.data_dir] if args.data_dir else []),
    ]  # fmt: skip


def print_table(rows: list[dict[str, Any]]) -> None:
    print(f"{'baseline':<15} {'accuracy':>9} {'95% CI':>15} {'tok in/ex':>10} {'tok out/ex':>11} {'wall s':>8} "
          f"{'code':>6} {'out-block':>9} {'no answer':>9}")  # fmt: skip
    for row in rows:
        t = row["test"]
        n = max(1, t["n"])
        ci = t["ci95"]
        print(f"{row['entry']:<15} {t['accuracy']:>9.1%} {ci[0]:>7.1%}–{ci[1]:<7.1%} {t['tokens_in'] / n:>10.0f} "
              f"{t['tokens_out'] / n:>11.0f} {t['wall_s']:>8.0f} {t['code_answers']:>6.1%} "
              f"{t['output_blocks']:>9.1%} {t['no_answer']:>9.1%}")  # fmt: skip


def main(argv: list[str] | None = None) -> int:
    sys.path.insert(0, str(REPO))
    from benchmarks import suite

    command = suite_argv(argv)
    print("python benchmarks/suite.py " + " ".join(command), file=sys.stderr, flush=True)
    code = suite.main(command)
    args = suite.parse_args(command)
    wanted = set(args.entry_list)
    rows = [r for r in suite.read_rows(Path(args.out)) if r["entry"] in wanted and r.get("status") == "ok"
            and r["task"] == args.task_list[0] and r["model"] == args.model]  # fmt: skip
    latest = {r["entry"]: r for r in rows}
    print()
    print_table([latest[e] for e in args.entry_list if e in latest])
    return code


if __name__ == "__main__":
    sys.exit(main())
