"""Every BBH task in the data folder, answered and counted honestly (issue #27).

For each BIG-Bench Hard task found in ``DATA/bbh`` and each mode — plain, zero-shot CoT
("Let's think step by step.") and 3-shot CoT (the paper's worked demos) — score the
first ``--limit`` test items and report: accuracy, % of outputs with no answer found,
% cut off at the token limit, % that copied a placeholder ("So the answer is (X)."), the
constant baseline (the most common answer of train, always given, on the same items),
and the share of the model's most common answer.

    python benchmarks/bbh_prompts.py --data-dir ../shared/data --model qwen2.5-coder-0.5b \\
        --limit 50 --resume

The two ``+rescue`` modes repeat the CoT modes with ``rescue`` (Kojima's second stage,
asked only of the outputs that hold no answer); their first stage is answered from the
response cache, so they cost only the follow-up calls.

Rows go to a JSON-lines file (``--out``), one per (task, mode); ``--resume`` skips the
rows already there, and every model answer is kept in the response cache of ``--db``,
so an interrupted run loses at most the evaluation in flight. ``--legacy-format`` uses
the old answer-format line with its placeholder (``So the answer is X.``), to measure
what the task-built line changed. ``--proposals N`` also asks the model for N instructions
per task the way a search would (BBH tasks have none: APE's induction from five
input-output pairs) and reports how many were usable (the rest were empty, repeats, about
the shown examples, or spoke of "the instruction" instead of the task).
"""

from __future__ import annotations

import argparse
import json
import re
import sys
import time
from collections import Counter
from pathlib import Path
from typing import Any

RESULTS = Path(__file__).resolve().parent / "results"
TRIGGER = "Let's think step by step."
MODES: dict[str, dict[str, Any]] = {
    "plain": {"cot": None, "shots": 0},
    "zero-shot CoT": {"cot": TRIGGER, "shots": 0},
    "3-shot CoT": {"cot": TRIGGER, "shots": 3},
    # the same, asking for the answer where the reasoning holds none (cut off, or never
    # stated): the first stage comes from the response cache of the mode above
    "zero-shot CoT+rescue": {"cot": TRIGGER, "shots": 0, "rescue": True},
    "3-shot CoT+rescue": {"cot": TRIGGER, "shots": 3, "rescue": True},
}
LEGACY_FORMAT = 'End your answer with "So the answer is X."'
# "So the answer is (X)." / "the answer is X": the placeholder of the format line, copied
PLACEHOLDER = re.compile(r"answer is\s*[\"'(\[]?X[)\]\"']?(?![A-Za-z])")


def bbh_tasks(data_dir: Path) -> list[str]:
    return sorted(path.stem for path in (data_dir / "bbh").glob("*.json"))


def measure(task: Any, mode: str, backend: Any, args: argparse.Namespace) -> dict[str, Any]:
    import promptopt
    from promptopt.evaluation import make_candidate

    options = MODES[mode]
    candidate = make_candidate(
        task,
        max_tokens=args.max_new_tokens,
        answer_format=LEGACY_FORMAT if args.legacy_format else None,
        **options,
    )
    started = time.perf_counter()
    report = promptopt.evaluate(task, candidate, backend, split="test", limit=args.limit, db=args.db,
                                batch_size=args.batch_size)  # fmt: skip
    scored = [r for r in report.results if r.score is not None]
    outputs = [s.raw_output for r in scored for s in r.samples]
    answers = Counter(r.answer for r in scored)
    top_answer, top_count = answers.most_common(1)[0] if answers else (None, 0)
    constant = report.constant_baseline or {}
    n = max(1, len(scored))
    return {
        "task": task.name,
        "mode": mode,
        "model": backend.model_id,
        "legacy_format": bool(args.legacy_format),
        "extractor": task.extractor_name,
        "candidate": candidate.hash,
        "n": report.n,
        "n_failed": report.n_failed,
        "accuracy": report.accuracy,
        "ci95": [report.ci_low, report.ci_high],
        "no_answer": report.n_no_answer / n,
        "truncated": report.n_truncated / n,
        "placeholder": sum(1 for o in outputs if PLACEHOLDER.search(o)) / max(1, len(outputs)),
        "constant_answer": constant.get("answer"),
        "constant": (constant.get("test") or {}).get("accuracy"),
        "top_answer": top_answer,
        "top_share": top_count / n,
        "tokens_out_per_example": report.tokens_out_per_example,
        "calls": report.calls,
        "wall_s": time.perf_counter() - started,
        "run_id": report.run_id,
    }


def usable_proposals(task: Any, backend: Any, n: int) -> dict[str, Any]:
    """How many of ``n`` instruction proposals for ``task`` (an empty instruction, so
    APE's induction) a search could use, and a few of them."""
    from promptopt.proposers import Proposer

    proposer = Proposer(backend, task)
    texts = proposer.paraphrase("", n)
    return {"task": task.name, "proposals_asked": n, "proposals_usable": len(texts),
            "meta_rejected": proposer.meta_rejected, "about_examples": proposer.rejected,
            "proposal_examples": texts[:3]}  # fmt: skip


def _pct(value: float | None) -> str:
    return "–" if value is None else f"{value:.0%}"


def table(rows: list[dict[str, Any]]) -> str:
    """The benchmark table, with a count of tasks where zero-shot CoT reaches the constant."""
    lines = [
        f"{'task':<38} {'mode':<20} {'acc':>5} {'no ans':>6} {'cut':>5} {'placeh':>6} {'const':>6} {'top':>10}"
    ]
    for r in rows:
        top = f"{r['top_answer']!s:.6} {_pct(r['top_share'])}"
        lines.append(
            f"{r['task']:<38} {r['mode']:<20} {_pct(r['accuracy']):>5} {_pct(r['no_answer']):>6} "
            f"{_pct(r['truncated']):>5} {_pct(r['placeholder']):>6} {_pct(r['constant']):>6} {top:>10}"
        )
    for mode in ("zero-shot CoT", "zero-shot CoT+rescue"):
        cot = [r for r in rows if r["mode"] == mode and r["constant"] is not None]
        if cot:
            reached = sum(1 for r in cot if r["accuracy"] >= r["constant"])
            lines.append(f"{mode} at or above the constant baseline on {reached} of {len(cot)} tasks")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    import promptopt
    from promptopt.backends import make_backend

    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--data-dir", required=True, help="folder with bbh/<task>.json (e.g. ../shared/data)")
    parser.add_argument("--model", default="qwen2.5-coder-0.5b")
    parser.add_argument("--limit", type=int, default=50, help="the first N test items of each task")
    parser.add_argument(
        "--tasks", nargs="*", default=None, help="only these subtasks (default: every one found)"
    )
    parser.add_argument("--modes", nargs="*", default=list(MODES), choices=list(MODES))
    parser.add_argument("--max-new-tokens", type=int, default=512)
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--legacy-format", action="store_true", help="the old placeholder answer-format line")
    parser.add_argument(
        "--out", default=None, help="JSON-lines file (default results/bbh_prompts_<model>.jsonl)"
    )
    parser.add_argument("--db", default=str(RESULTS / "bbh_prompts.db"))
    parser.add_argument("--resume", action="store_true", help="skip the (task, mode) rows already in --out")
    parser.add_argument("--proposals", type=int, default=0, help="also ask N instruction proposals per task")
    args = parser.parse_args(argv)

    data_dir = Path(args.data_dir)
    names = args.tasks or bbh_tasks(data_dir)
    model_tag = args.model.replace("/", "_") + ("_legacy" if args.legacy_format else "")
    out = Path(args.out) if args.out else RESULTS / f"bbh_prompts_{model_tag}.jsonl"
    out.parent.mkdir(parents=True, exist_ok=True)
    if "://" not in args.db:  # a file path (a URL's own folder is the user's to make)
        Path(args.db).parent.mkdir(parents=True, exist_ok=True)
    rows: list[dict[str, Any]] = []
    if args.resume and out.is_file():
        rows = [json.loads(line) for line in out.read_text(encoding="utf-8").splitlines() if line.strip()]
    elif out.is_file():
        out.unlink()
    done = {(r["task"], r["mode"]) for r in rows}
    backend = make_backend(args.model, batch_size=args.batch_size)
    try:
        for name in names:
            task = promptopt.get_task(f"bbh:{name}", data_dir)
            if args.proposals and (task.name, "proposals") not in done:
                row = {**usable_proposals(task, backend, args.proposals), "mode": "proposals"}
                rows.append(row)
                with out.open("a", encoding="utf-8") as handle:
                    handle.write(json.dumps(row) + "\n")
            for mode in args.modes:
                if (task.name, mode) in done:
                    continue
                row = measure(task, mode, backend, args)
                rows.append(row)
                with out.open("a", encoding="utf-8") as handle:
                    handle.write(json.dumps(row) + "\n")
                print(json.dumps(row), flush=True)
    finally:
        backend.close()
    order = {mode: i for i, mode in enumerate(MODES)}
    ours = [r for r in rows if r["task"].removeprefix("bbh:") in names]
    shown = sorted((r for r in ours if r["mode"] in MODES), key=lambda r: (r["task"], order[r["mode"]]))
    asked = [r for r in ours if r["mode"] == "proposals"]
    print()
    print(f"BBH · {args.model} · first {args.limit} test items · greedy · max {args.max_new_tokens} new tokens"
          + (" · legacy answer-format line" if args.legacy_format else ""))  # fmt: skip
    print(table(shown))
    for r in asked:
        print(f"{r['task']}: {r['proposals_usable']} of {r['proposals_asked']} instruction proposals usable "
              f"({r['meta_rejected']} spoke of the instruction, {r['about_examples']} of the shown examples)")  # fmt: skip
    print(f"rows in {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
