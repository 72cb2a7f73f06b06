"""What ``json_mode`` changes on a local model: the same JSON extraction task evaluated with
free generation and with generation constrained to the task's JSON Schema (issue #20).

The task is the notice-fields extraction of ``examples/extract_json.py`` (name, city, date,
amount of a short notice, scored field by field by ``json_fields``), asked in two ways:
with an instruction that spells out the JSON wanted, and with a terse one that does not
(the case where a small model writes prose, code or a fenced block instead). For each
(instruction, json_mode) cell: mean score, % of outputs with no JSON found or failing the
schema, % cut off at the token limit, output tokens per item and wall time.

    python benchmarks/json_mode.py --model qwen2.5-coder-0.5b --limit 30

Every model answer is kept in the response cache of ``--db``, so a rerun costs nothing.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

INSTRUCTIONS = {
    "spelled out": "Extract name, city, date (YYYY-MM-DD) and amount (a number) from the notice. Answer with one "
    'JSON object with the keys "name", "city", "date" and "amount".',
    "terse": "Who paid, where, when and how much?",
}


def _example_module() -> object:
    spec = importlib.util.spec_from_file_location("extract_json", ROOT / "examples" / "extract_json.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--model", default="qwen2.5-coder-0.5b")
    parser.add_argument("--limit", type=int, default=30, help="test items per cell")
    parser.add_argument("--max-tokens", type=int, default=128)
    parser.add_argument("--db", default=str(ROOT / "benchmarks" / "results" / "json_mode.db"))
    args = parser.parse_args(argv)

    import promptopt
    from promptopt.backends import make_backend

    example = _example_module()
    rows = example.make_rows(args.limit, 2)  # type: ignore[attr-defined]
    Path(args.db).parent.mkdir(parents=True, exist_ok=True)
    db = args.db if "://" in args.db else f"sqlite:///{args.db}"
    backend = make_backend(args.model)
    print(f"model {backend.model_id}, {args.limit} items per cell, max {args.max_tokens} tokens")
    print("| instruction | json_mode | score | no valid JSON | cut off | tokens out/item | wall s |")
    print("|---|---|---|---|---|---|---|")
    try:
        for label, instruction in INSTRUCTIONS.items():
            for json_mode in (False, True):
                task = promptopt.Task.from_records(
                    train=rows, test=rows, input_fields=["notice"], target_field="fields",
                    name="notice-fields", extractor="json", json_schema=example.SCHEMA,  # type: ignore[attr-defined]
                    metric="json_fields", json_mode=json_mode,
                )  # fmt: skip
                started = time.perf_counter()
                report = promptopt.evaluate(
                    task, {"instruction": instruction, "max_tokens": args.max_tokens}, backend,
                    split="test", limit=args.limit, db=db,
                )  # fmt: skip
                wall = time.perf_counter() - started
                n = max(1, report.n)
                print(
                    f"| {label} | {'on' if json_mode else 'off'} | {report.accuracy:.1%} "
                    f"| {report.n_no_answer / n:.0%} | {report.n_truncated / n:.0%} "
                    f"| {report.tokens_out / n:.0f} | {wall:.0f} |",
                    flush=True,
                )
                if not json_mode:
                    first = (
                        report.results[0].samples[0].raw_output
                        if report.results and report.results[0].samples
                        else ""
                    )
                    print(f"|   first output: {json.dumps(first[:70])} | | | | | | |")
    finally:
        backend.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
