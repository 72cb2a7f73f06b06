"""A real search on GSM8K: does the found prompt beat zero-shot chain of thought on
held-out test data? Now a suite command (``benchmarks/suite.py``): this script keeps its
flags and runs the same grid there.

Each policy starts from zero-shot CoT ("Let's think step by step."), searches the
instruction (or, with ``--search cot_trigger``, the trigger) on dev drawn from train
with the budget preset's sizes (no call cap unless ``--max-calls``), and its winner is
compared with the starting prompt on the same test items (the suite's paired test against
its ``zero-shot-cot`` entry). Everything is stored and cached in ``--db``; the rows are
``benchmarks/results/search_gsm8k-<model>.jsonl`` (a rerun continues it).

    python benchmarks/search_gsm8k.py --data-dir ../shared/data --model qwen2.5-coder-1.5b \\
        --policies ape opro --budget light --test-size 200

is the suite's

    python benchmarks/suite.py run --data-dir ../shared/data --model qwen2.5-coder-1.5b --tasks gsm8k \\
        --entries zero-shot-cot,ape,opro --preset light --max-calls none --dev-size 30 --test-size 200 \\
        --out benchmarks/results/search_gsm8k-qwen2.5-coder-1.5b.jsonl --resume
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))
RESULTS = REPO / "benchmarks" / "results"


def suite_argv(argv: list[str] | None = None) -> list[str]:
    """The suite command this script's flags stand for."""
    from promptopt.controller import PRESETS

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
    db = args.db if "://" in args.db else f"sqlite:///{args.db}"
    out = RESULTS / f"search_gsm8k-{args.model.replace('/', '_')}.jsonl"
    return [
        "run", "--tasks", args.task, "--entries", ",".join(["zero-shot-cot", *args.policies]),
        "--model", args.model, "--preset", args.budget, "--slot", args.slot,
        "--dev-size", str(args.dev_size or PRESETS[args.budget]["dev_size"]), "--test-size", str(args.test_size),
        "--max-calls", "none" if args.max_calls is None else str(args.max_calls),
        "--max-new-tokens", str(args.max_new_tokens), "--batch-size", str(args.batch_size),
        "--seeds", str(args.seed), "--db", db, "--out", str(out), "--resume",
        *(["--data-dir", args.data_dir] if args.data_dir else []),
    ]  # fmt: skip


def main(argv: list[str] | None = None) -> int:
    from benchmarks import suite

    command = suite_argv(argv)
    print("python benchmarks/suite.py " + " ".join(command), file=sys.stderr, flush=True)
    return suite.main(command)


if __name__ == "__main__":
    sys.exit(main())
