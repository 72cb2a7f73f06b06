"""Benchmark of issue #28: does option permutation or calibration undo a model's answer bias?

For each BBH task of the data folder whose answers form a small set (multiple choice and
two-label tasks), each model and each strategy — plain, ``permute 3``, and each
calibration — the task's default prompt (no chain of thought, greedy) is scored on the
first ``--limit`` test items. Each finished (task, model, strategy) is one JSON line of
``--out``; a rerun skips the lines already there, and the response cache in ``--db``
answers the requests a killed run had made, so a run can be resumed at any point.

``--strategies ...,search-default,search-answer-bias`` adds a TPE search's winner
without and with the new dimensions at equal ``--search-calls``. ``dev-pick`` is the
cheapest search over the new dimensions: each strategy of ``--pick-from`` is scored on the
first ``--dev-limit`` dev items, and the best on dev (ties: the earlier in ``--pick-from``,
plain first) is scored on test; the row says which it picked and every dev score.
``dev-pick-balanced`` picks by balanced accuracy on dev instead (the mean of each gold
label's accuracy), so that a strategy's lean earns nothing from the dev split's share of
the label it leans on.

Per line: accuracy, the most common answer's share next to the gold's most common share,
the constant baseline on the same items, calls and tokens. A strategy a task cannot use
(``position`` on a task that is not multiple choice) is a line with ``status`` "not
offered" and the reason. ``--summary`` prints the table and the issue's goals from the
lines. Figures go into docs/answer-bias.md, never into a test.

    python benchmarks/answer_bias.py --tasks bbh:snarks --models qwen2.5-coder-0.5b \\
        --limit 50 --out answer_bias.jsonl --db sqlite:///answer_bias.db
    python benchmarks/answer_bias.py --summary --out answer_bias.jsonl
"""

from __future__ import annotations

import argparse
import json
import sys
from collections import Counter
from pathlib import Path
from typing import Any

STRATEGIES: dict[str, dict[str, Any]] = {
    "plain": {},
    "raw": {"calibration": "raw"},  # label scores, no prior: what the calibrations start from
    "permute3": {"permute": 3},
    "contextual": {"calibration": "contextual"},
    "batch": {"calibration": "batch"},
    "position": {"calibration": "position"},
    # the label scores under 3 orderings of the options, each calibrated, averaged (batch:
    # then the batch's mean average divided out); on a task whose items list no options,
    # each item is scored once, as the calibration alone scores it
    "permute3-raw": {"permute": 3, "calibration": "raw"},
    "permute3-contextual": {"permute": 3, "calibration": "contextual"},
    "permute3-batch": {"permute": 3, "calibration": "batch"},
    "permute3-position": {"permute": 3, "calibration": "position"},
    # every cyclic shift of an item of up to 6 options (seeded orderings beyond): a letter's
    # lean cancels in the average however the options are ordered (3 shifts of 6 do not)
    "permute6-batch": {"permute": 6, "calibration": "batch"},
}


#: ``raw`` corrects nothing: it answers with the best-scored label, so that a calibration's
#: gain over ``plain`` splits into reading the answer from label scores and dividing the
#: prior out. It is not a corrected candidate for the constant-baseline goal.
UNCORRECTED = ("plain", "raw")

#: A TPE search over a space at ``--search-calls`` (equal for both), its winner scored on
#: the same test items: the best search winner without and with the new dimensions.
SEARCHES = {"search-default": "default", "search-answer-bias": "answer-bias"}

#: The strategy that picks one of ``--pick-from`` on dev (a grid search over the new
#: dimensions with the default prompt); its row is the picked strategy's test result.
DEV_PICK = "dev-pick"
#: The same pick by balanced accuracy on dev (the mean over gold labels of each label's
#: accuracy), which gives a lean no credit for the dev split's share of its label.
DEV_PICK_BALANCED = "dev-pick-balanced"
PICKS = (DEV_PICK, DEV_PICK_BALANCED)


def corrects(strategy: str, row: dict[str, Any]) -> bool:
    """Whether a row's answers were corrected for the lean: a strategy other than plain
    and raw, a dev pick of one, or a search winner that permutes or calibrates (a winner
    of the default space, or a pick of plain, is no corrected candidate)."""
    if strategy in UNCORRECTED:
        return False
    if "picked" in row:
        return row["picked"] not in UNCORRECTED
    if "winner" in row:
        winner = row["winner"] or {}
        return winner.get("permute", 1) != 1 or winner.get("calibration", "none") not in (
            "none",
            *UNCORRECTED,
        )
    return True


def small_answer_tasks(data_dir: str | None) -> list[str]:
    """The bbh: tasks with a small answer set (multiple choice or a few labels)."""
    from promptopt.tasks import get_task, list_tasks

    names = []
    for info in list_tasks(data_dir):
        if not info.name.startswith("bbh:"):
            continue
        task = get_task(info.name, data_dir)
        if task.labels is not None:
            names.append(info.name)
    return names


def not_offered(task: Any, strategy: str, pick_from: list[str] | None = None) -> str | None:
    """Why ``strategy`` does not apply to ``task`` (as a search would not offer it), or None;
    ``dev-pick`` applies where one of ``pick_from`` does."""
    from promptopt.bias.space import calibration_problem, permute_problem

    if strategy in PICKS:
        if all(not_offered(task, s) for s in pick_from or []):
            return f"none of --pick-from {','.join(pick_from or [])} applies to {task.name}"
        return None
    calibration = STRATEGIES.get(strategy, {}).get("calibration")
    # with a calibration, items without options are scored once as they are (the executor
    # says so): permute3-<calibration> is then the calibration's row, not a missing one
    if (
        STRATEGIES.get(strategy, {}).get("permute", 1) != 1
        and not calibration
        and (problem := permute_problem(task))
    ):
        return problem
    return calibration_problem(task, calibration) if calibration else None


def score(task: Any, strategy: str, split: str, limit: int, args: argparse.Namespace, backend: Any) -> Any:
    """The task's default prompt with ``strategy``, scored on ``split`` (an EvalReport)."""
    import dataclasses

    from promptopt.evaluation import evaluate, make_candidate

    candidate = dataclasses.replace(make_candidate(task), **STRATEGIES[strategy])
    return evaluate(
        task, candidate, backend, split=split, limit=limit, db=args.db, batch_size=args.batch_size
    )


def share_of_most_common(values: list[str | None]) -> tuple[str | None, float]:
    counts = Counter(values)
    if not counts:
        return None, 0.0
    value, n = counts.most_common(1)[0]
    return value, n / len(values)


def run_search(
    task: Any, model: str, strategy: str, args: argparse.Namespace, backend: Any
) -> dict[str, Any]:
    """A TPE search over the strategy's space; the winner's test results and its candidate."""
    from promptopt.budget import Budget
    from promptopt.controller import SearchConfig, SearchResult, search
    from promptopt.evaluation import make_candidate
    from promptopt.store import Store

    config = SearchConfig.from_preset(
        "light", task=task.name, model=model, base=make_candidate(task), policy="tpe", space=SEARCHES[strategy],
        test_size=args.limit, seed=0, batch_size=args.batch_size, data_dir=args.data_dir,
        budget=Budget(max_calls=args.search_calls),
    )  # fmt: skip
    shown = [-1]

    def progress(p: Any) -> None:  # a line per tenth of the budget: a search here takes most of an hour
        tenth = int(10 * (p.budget_fraction or 0))
        if tenth > shown[0]:
            shown[0] = tenth
            best = "–" if p.best_dev is None else f"{p.best_dev:.1%}"
            print(f"  {strategy}: {p.phase}, {p.spent.get('calls', 0)} calls of {args.search_calls}, "
                  f"best dev {best}, {p.elapsed_s:.0f} s", file=sys.stderr, flush=True)  # fmt: skip

    result = search(config, task=task, backend=backend, db=args.db, progress=progress)
    assert isinstance(result, SearchResult)  # not a dry run
    with Store(args.db) as store:
        results = [r for r in store.get_evaluations(result.run_id, result.winner.hash) if r.split == "test"]
    return {"results": results, "winner": result.winner.to_dict(), "run_id": result.run_id,
            "search_calls": dict(result.spent).get("calls")}  # fmt: skip


def run_pick(task: Any, args: argparse.Namespace, backend: Any, by: str = DEV_PICK) -> dict[str, Any]:
    """Score each strategy of ``args.pick_from`` the task can use on dev; the best one (by
    accuracy, or by balanced accuracy for ``dev-pick-balanced``)'s test results, which it
    was and every dev score, and the calls of both splits."""
    from promptopt.stats import balanced_accuracy

    dev: dict[str, Any] = {}
    balanced: dict[str, float] = {}
    for strategy in args.pick_from:
        if not_offered(task, strategy) is None:
            dev[strategy] = score(task, strategy, "dev", args.dev_limit, args, backend)
            balanced[strategy] = balanced_accuracy(
                [(r.gold, r.score) for r in dev[strategy].results if r.score is not None]
            )
            print(f"  {by}: {strategy} on {dev[strategy].n_scored} dev items: {dev[strategy].accuracy:.1%}"
                  f" (balanced {balanced[strategy]:.1%})", file=sys.stderr, flush=True)  # fmt: skip
    on_dev = balanced if by == DEV_PICK_BALANCED else {s: r.accuracy for s, r in dev.items()}
    picked = max(on_dev, key=lambda s: on_dev[s])  # the first of the best: plain before any correction
    report = score(task, picked, "test", args.limit, args, backend)
    reports = [*dev.values(), report]
    return {
        "results": list(report.results), "picked": picked, "n": report.n_scored, "accuracy": round(report.accuracy, 4),
        "dev_accuracy": {s: round(r.accuracy, 4) for s, r in dev.items()},
        "dev_balanced_accuracy": {s: round(a, 4) for s, a in balanced.items()},
        "dev_n": max(r.n_scored for r in dev.values()),
        "calls": sum(r.calls for r in reports), "cache_hits": sum(r.cache_hits for r in reports),
        "wall_s": round(sum(r.wall_s for r in reports), 1),
    }  # fmt: skip


def _shares(results: list[Any]) -> dict[str, Any]:
    """The answers' and golds' distributions of ``results``, and each scored item's score
    (for the summary's paired test against plain on the same items)."""
    scored = [r for r in results if r.score is not None]  # both shares over the same items
    answers = [r.answer for r in scored]
    top, top_share = share_of_most_common(answers)
    gold_top, gold_share = share_of_most_common([r.gold for r in scored])
    return {
        "most_common_answer": top, "most_common_share": round(top_share, 4),
        "gold_most_common": gold_top, "gold_most_common_share": round(gold_share, 4),
        "share_gap_points": round(100 * abs(top_share - gold_share), 1),
        "answers": dict(Counter(a or "(no answer)" for a in answers).most_common()),
        "item_scores": {r.example_id: r.score for r in results if r.score is not None},
    }  # fmt: skip


def paired_against_plain(pairs: list[tuple[dict[str, Any], dict[str, Any]]]) -> str:
    """The pooled paired test of a strategy against plain over the items both rows scored
    (every task's items together): "+6.6 p=0.01 (n 650)", or "–" when the rows carry no
    per-item scores (rows written before they did)."""
    from promptopt.stats import paired_difference

    a: list[float] = []
    b: list[float] = []
    for plain, row in pairs:
        mine, theirs = row.get("item_scores") or {}, plain.get("item_scores") or {}
        for item in sorted(set(mine) & set(theirs)):
            a.append(float(theirs[item]))
            b.append(float(mine[item]))
    if not a:
        return "–"
    test = paired_difference(a, b)
    return f"{100 * test['diff']:+.1f} p={test['p_value']:.2g} (n {test['n']})"


def held_out(task: Any, skip: int) -> Any:
    """``task`` with the first ``skip`` items of its test split left out: a second, fresh
    slice of test for a strategy chosen on the first one (the same data, prompt and
    cache keys; only which items are scored, and what ``batch`` calibrates on, change)."""
    import copy

    if not skip:
        return task
    test = task.examples("test")
    if skip >= len(test):
        raise SystemExit(f"--skip {skip}: {task.name} has only {len(test)} test items")
    task.labels  # noqa: B018 - the label set of the whole task, computed before the test split is cut
    clone = copy.copy(task)
    clone.__dict__["_splits"] = {**task._splits, "test": test[skip:]}
    return clone


def run_one(
    task_name: str, model: str, strategy: str, args: argparse.Namespace, backend: Any
) -> dict[str, Any]:
    from promptopt.constant import constant_baseline
    from promptopt.tasks import get_task

    task = held_out(get_task(task_name, args.data_dir), args.skip)
    why = not_offered(task, strategy, args.pick_from)
    if why:
        return {
            "task": task_name,
            "model": model,
            "strategy": strategy,
            "status": "not offered",
            "reason": why,
            **({"skip": args.skip} if args.skip else {}),
        }
    constant = constant_baseline(task, test=task.examples("test", args.limit)) or {}
    row: dict[str, Any] = {
        "task": task_name, "model": model, "strategy": strategy, "skip": args.skip,
        "constant": {"answer": constant.get("answer"), "accuracy": (constant.get("test") or {}).get("accuracy")},
    }  # fmt: skip
    if strategy in PICKS:
        found = run_pick(task, args, backend, by=strategy)
        return {**row, **_shares(found.pop("results")), **found}
    if strategy in SEARCHES:
        found = run_search(task, model, strategy, args, backend)
        results = found.pop("results")
        n = sum(1 for r in results if r.score is not None)
        accuracy = sum(r.score or 0 for r in results) / max(1, n)
        return {**row, **_shares(results), **found, "n": n, "accuracy": round(accuracy, 4)}
    report = score(task, strategy, "test", args.limit, args, backend)
    return {
        **row, **_shares(list(report.results)), "n": report.n_scored, "accuracy": round(report.accuracy, 4),
        "calls": report.calls, "cache_hits": report.cache_hits, "tokens_in": report.tokens_in,
        "tokens_out": report.tokens_out, "wall_s": round(report.wall_s, 1), "run_id": report.run_id,
    }  # fmt: skip


def slice_name(row: dict[str, Any]) -> str:
    """A row's task, with the test items it skipped (``bbh:snarks @50``) when it did: rows
    of two slices of one task are two lines of the summary."""
    return row["task"] + (f" @{row['skip']}" if row.get("skip") else "")


def summary(rows: list[dict[str, Any]]) -> str:
    """Per model, a table (accuracy and the most common answer's share per task and
    strategy) and the issue's three goals, computed per corrected strategy over the tasks
    (and slices of test, with ``--skip``) where it ran."""
    lines: list[str] = []
    for model in sorted({r["model"] for r in rows}):
        mine = {(slice_name(r), r["strategy"]): r for r in rows if r["model"] == model}
        tasks = sorted({t for t, _ in mine})
        strategies = [s for s in [*STRATEGIES, *SEARCHES, *PICKS] if any(k[1] == s for k in mine)]
        lines += [
            f"### {model}",
            "",
            "accuracy % (the model's most common answer's share %); gold's most common share % / constant baseline %",
            "",
        ]
        lines.append("| task | gold top / constant | " + " | ".join(strategies) + " |")
        lines.append("|---|---|" + "---|" * len(strategies))
        for task in tasks:
            first = next(
                (r for (t, _), r in mine.items() if t == task and r.get("status") != "not offered"), None
            )
            if first is None:  # nothing ran here (rows written before a not-offered row kept its slice)
                continue
            cells = []
            for strategy in strategies:
                r = mine.get((task, strategy))
                if r is None:
                    cells.append("")
                elif r.get("status") == "not offered":
                    cells.append("n/a")
                else:
                    cells.append(f"{100 * r['accuracy']:.0f} ({100 * r['most_common_share']:.0f})")
            constant = first["constant"]["accuracy"]
            head = f"{100 * first['gold_most_common_share']:.0f} / {'–' if constant is None else f'{100 * constant:.0f}'}"
            lines.append(f"| {task} | {head} | " + " | ".join(cells) + " |")
        lines += ["", "| strategy | tasks | share within 10 of gold's | mean gain over plain (points) | "
                  "below constant where another is above | pooled paired vs plain (points) |",
                  "|---|---|---|---|---|---|"]  # fmt: skip
        for strategy in strategies:
            if strategy == "plain":
                continue
            pairs = [(mine[(t, "plain")], r) for (t, s), r in mine.items()
                     if s == strategy and r.get("status") != "not offered" and (t, "plain") in mine]  # fmt: skip
            if not pairs:
                continue
            within = sum(1 for _, r in pairs if r["share_gap_points"] <= 10)
            gain = sum(100 * (r["accuracy"] - p["accuracy"]) for p, r in pairs) / len(pairs)
            below = []
            for _, r in pairs:
                constant = r["constant"]["accuracy"]
                others = [o for (t, s), o in mine.items() if t == slice_name(r) and corrects(s, o)
                          and o.get("status") != "not offered"]  # fmt: skip
                if (
                    constant is not None
                    and r["accuracy"] < constant
                    and any(o["accuracy"] > constant for o in others)
                ):
                    below.append(slice_name(r).removeprefix("bbh:"))
            lines.append(f"| {strategy} | {len(pairs)} | {within} of {len(pairs)} | {gain:+.1f} | "
                         f"{len(below)}{': ' + ', '.join(below) if below else ''} | "
                         f"{paired_against_plain(pairs)} |")  # fmt: skip
        lines.append("")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--tasks", default="", help="comma-separated tasks (default: every small-answer bbh: task)"
    )
    parser.add_argument("--models", default="qwen2.5-coder-0.5b,qwen2.5-coder-1.5b")
    parser.add_argument("--strategies", default=",".join(STRATEGIES))
    parser.add_argument("--limit", type=int, default=50, help="test items per task")
    parser.add_argument(
        "--skip", type=int, default=0,
        help="leave out the first SKIP test items (--skip 50: the items after the first 50, a fresh slice "
        "for a strategy chosen on them)",
    )  # fmt: skip
    parser.add_argument("--data-dir", default=None)
    parser.add_argument("--db", default="sqlite:///answer_bias.db", help="store and response cache (resume)")
    parser.add_argument(
        "--out", default="answer_bias.jsonl",
        help="JSON lines, one per finished run (--summary: several files, comma-separated; a row of a later "
        "file replaces an earlier one's for the same task, slice, model and strategy)",
    )  # fmt: skip
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--search-calls", type=int, default=400, help="budget of each search-* strategy")
    parser.add_argument(
        "--pick-from", default="plain,contextual,batch,position",
        help=f"the strategies {DEV_PICK} and {DEV_PICK_BALANCED} score on dev, in tie order (permute3 costs 3 "
        "generations per item)",
    )  # fmt: skip
    parser.add_argument(
        "--dev-limit",
        type=int,
        default=40,
        help=f"dev items each {DEV_PICK} or {DEV_PICK_BALANCED} strategy is scored on",
    )
    parser.add_argument(
        "--summary", action="store_true", help="print the table and the goals from --out; run nothing"
    )
    args = parser.parse_args(argv)
    if args.summary:
        files = [Path(f) for f in args.out.split(",") if f]
        print(
            summary([json.loads(line) for f in files for line in f.read_text(encoding="utf-8").splitlines()])
        )
        return 0

    from promptopt.backends import make_backend

    tasks = [t for t in args.tasks.split(",") if t] or small_answer_tasks(args.data_dir)
    strategies = [s for s in args.strategies.split(",") if s]
    unknown = set(strategies) - set(STRATEGIES) - set(SEARCHES) - set(PICKS)
    if unknown:
        parser.error(
            f"unknown strategies {sorted(unknown)}; expected some of {[*STRATEGIES, *SEARCHES, *PICKS]}"
        )
    args.pick_from = [s for s in args.pick_from.split(",") if s]
    if not args.pick_from or set(args.pick_from) - set(STRATEGIES):
        parser.error(f"--pick-from takes some of {list(STRATEGIES)}, got {args.pick_from}")
    out = Path(args.out)
    done = set()
    if out.exists():
        for line in out.read_text(encoding="utf-8").splitlines():
            row = json.loads(line)
            done.add((row["task"], row["model"], row["strategy"], row.get("skip", 0)))
    for model in [m for m in args.models.split(",") if m]:
        backend = make_backend(model, batch_size=args.batch_size)
        try:
            for task_name in tasks:
                for strategy in strategies:
                    if (task_name, model, strategy, args.skip) in done:
                        continue
                    print(f"{task_name:32} {model:20} {strategy:10} ...", file=sys.stderr, flush=True)
                    row = run_one(task_name, model, strategy, args, backend)
                    with out.open("a", encoding="utf-8") as handle:
                        handle.write(json.dumps(row, sort_keys=True) + "\n")
                    if row.get("status") == "not offered":
                        print(
                            f"{task_name:32} {model:20} {strategy:10} not offered: {row['reason']}",
                            flush=True,
                        )
                        continue
                    print(
                        f"{task_name:32} {model:20} {strategy:10} acc {row['accuracy']:.1%}  most common "
                        f"{row['most_common_answer']} {row['most_common_share']:.0%} (gold {row['gold_most_common_share']:.0%})"
                        f"  constant {row['constant']['accuracy']}  calls {row.get('calls', row.get('search_calls'))}"
                        + (f" (+{row['cache_hits']} from the cache)" if row.get("cache_hits") else "")
                        + (f"  picked {row['picked']}" if "picked" in row else ""),
                        flush=True,
                    )
        finally:
            backend.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
