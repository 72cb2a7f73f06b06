"""The suite's summary (``python benchmarks/suite.py summary``): one table, the issue's
goals computed from the rows, one plot. Pure functions of the rows, so the tests check
the arithmetic on hand-made rows.

- **Items, not runs**: each test item is one observation. An entry that ran several
  seeds scores an item by the mean of its seeds' scores (two seeds on 100 items are 100
  paired observations, not 200), and a task run on more than one model is one task of the
  summary per model (``gsm8k · qwen2.5-coder-1.5b``), never pooled across models.
- **Accuracy** of an entry on a task: the mean of its per-item test scores (a 95% interval
  from ``promptopt.stats.mean_interval``).
- **Gain vs zero-shot CoT** on a task: the entry's per-item scores minus zero-shot CoT's
  on the same items: ``promptopt.stats.paired_difference`` (mean difference,
  paired-bootstrap 95% interval, McNemar's exact p for 0/1 scores, else a sign-flip
  permutation p).
- **Pooled paired test**: the same over every item pair of every task at once.
- **Average gain**: the mean over tasks of the per-task gains (each task weighs the same).
- **Goals** (issue #21): a promptopt search entry (not ``bootstrap-random``, which the
  issue names as the Wan et al. baseline: its gain is printed beside the goal) beats
  zero-shot CoT on at least 4
  tasks, its pooled test is significant and its average gain at least +8 points. The best
  entry is looked for among several, on the test items the goal is judged on, so the
  significance level is 5% divided by the number of entries compared (Bonferroni); the
  entry reported is one that meets the goal, else the one with the highest average gain.
  And that entry's average accuracy over the tasks both ran is above
  ``dspy-gepa-native``'s and ``dspy-mipro-native``'s, with no more calls to find its
  prompt on those tasks (equal calls, as the verdicts below).
- **Verdicts vs DSPy** (per task, for each DSPy entry that finished there): does a
  promptopt search beat it on held-out test, significantly (paired, 5%), with no more
  calls to find its prompt (search and full-dev selection; DSPy's own requests for a
  native entry), averaged over the seeds? ``suite.py run --match-calls ENTRY`` caps the
  searches so that they qualify.
"""

from __future__ import annotations

import json
import statistics
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

REFERENCE = "zero-shot-cot"
#: Searches the issue names as baselines: Wan et al.'s random search over the model's own
#: worked solutions. In the tables, and its gain printed beside the goal, but no entry the
#: goal is met by.
BASELINE_SEARCHES = ("bootstrap-random",)
NATIVES = ("dspy-gepa-native", "dspy-mipro-native")
GOAL_TASKS, GOAL_GAIN, ALPHA = 4, 0.08, 0.05

Row = Mapping[str, Any]


def cell_key(row: Row) -> tuple[str, str, int, str]:
    """A row's cell: (task, entry, seed, model)."""
    return (row["task"], row["entry"], int(row["seed"]), row["model"])


def labelled(row: Row) -> Row:
    """``row`` under the entry name the summary gives it: a search whose demos another
    model wrote (``--demo-teacher proposer``) is an entry of its own, ``tpe+teacher``."""
    if (row.get("settings") or {}).get("demo_teacher", "task") != "task":
        return {**row, "entry": f"{row['entry']}+teacher"}
    return row


def finished(rows: Sequence[Row]) -> list[Row]:
    """The last ok row of each cell (task, entry, seed, model; the entry as
    :func:`labelled` names it); with more than one model, each row's task is named with
    its model (a task per model, see the docstring)."""
    last: dict[tuple[Any, ...], Row] = {}
    for row in map(labelled, rows):
        if row.get("status") == "ok":
            last[cell_key(row)] = row
    return named_by_model(list(last.values()), list(last.values()))


def named_by_model(rows: Sequence[Row], done: Sequence[Row]) -> list[Row]:
    """``rows`` with each task named with its model when the finished rows ``done`` are of
    more than one model (as :func:`finished` names them)."""
    if len({r["model"] for r in done}) > 1:
        return [{**r, "task": f"{r['task']} · {r['model']}"} for r in rows]
    return list(rows)


def ordered(values: Sequence[str]) -> list[str]:
    return list(dict.fromkeys(values))


def cells(rows: Sequence[Row], task: str, entry: str) -> list[Row]:
    return [r for r in rows if r["task"] == task and r["entry"] == entry]


def item_scores(rows: Sequence[Row], task: str, entry: str) -> dict[str, float]:
    """Each test item's score on ``task`` by ``entry``, the mean over the seeds that scored it."""
    seen: dict[str, list[float]] = {}
    for row in cells(rows, task, entry):
        for item, score in row["test"]["scores"].items():
            if score is not None:
                seen.setdefault(item, []).append(float(score))
    return {item: statistics.mean(scores) for item, scores in seen.items()}


def pairs(
    rows: Sequence[Row], task: str, entry: str, reference: str = REFERENCE
) -> tuple[list[float], list[float]]:
    """(reference scores, entry scores) on the items both scored, each side's item score
    the mean over its seeds."""
    mine, theirs = item_scores(rows, task, entry), item_scores(rows, task, reference)
    both = [item for item in mine if item in theirs]
    return [theirs[item] for item in both], [mine[item] for item in both]


def accuracy(rows: Sequence[Row], task: str, entry: str) -> dict[str, Any] | None:
    from promptopt.stats import mean_interval

    scores = list(item_scores(rows, task, entry).values())
    if not scores:
        return None
    mean, low, high = mean_interval(scores)
    return {"accuracy": mean, "ci95": [low, high], "n": len(scores), "seeds": len(cells(rows, task, entry))}


def gains(rows: Sequence[Row], entry: str, tasks: Sequence[str]) -> dict[str, Any]:
    """Per-task and pooled gains of ``entry`` against zero-shot CoT, and their average."""
    from promptopt.stats import paired_difference

    per_task: dict[str, Any] = {}
    pooled_a: list[float] = []
    pooled_b: list[float] = []
    for task in tasks:
        a, b = pairs(rows, task, entry)
        if a:
            per_task[task] = paired_difference(a, b)
            pooled_a += a
            pooled_b += b
    diffs = [d["diff"] for d in per_task.values()]
    return {
        "per_task": per_task,
        "tasks_beaten": sum(1 for d in diffs if d > 0),
        "average_gain": statistics.mean(diffs) if diffs else None,
        "pooled": paired_difference(pooled_a, pooled_b) if pooled_a else None,
    }


def is_promptopt_search(rows: Sequence[Row], entry: str) -> bool:
    """A search of promptopt's own (not DSPy's, not a baseline the issue names)."""
    return (
        any(r["entry"] == entry and r["kind"] == "search" for r in rows)
        and not entry.startswith("dspy-") and entry not in BASELINE_SEARCHES
    )  # fmt: skip


def mean_accuracy(rows: Sequence[Row], entry: str, tasks: Sequence[str]) -> float | None:
    values = [acc["accuracy"] for t in tasks if (acc := accuracy(rows, t, entry)) is not None]
    return statistics.mean(values) if values else None


def meets_goal(g: Mapping[str, Any], alpha: float) -> bool:
    """Whether gains ``g`` (:func:`gains`) meet the goal vs zero-shot CoT at level ``alpha``."""
    pooled = g["pooled"]
    return bool(
        g["tasks_beaten"] >= GOAL_TASKS and pooled["diff"] > 0 and pooled["p_value"] < alpha
        and g["average_gain"] >= GOAL_GAIN
    )  # fmt: skip


def goals(rows: Sequence[Row]) -> dict[str, Any]:
    """The issue's goals, from the finished rows (see the module docstring)."""
    done = finished(rows)
    # cells that ran and did not finish, their tasks named as the finished rows' are
    tried = named_by_model([labelled(r) for r in rows if r.get("status") != "ok"], done)
    rows = done
    tasks = ordered([r["task"] for r in rows])
    entries = ordered([r["entry"] for r in rows])
    ours = {e: gains(rows, e, tasks) for e in entries if is_promptopt_search(rows, e)}
    ranked = [e for e in ours if ours[e]["average_gain"] is not None]
    baselines = {e: g for e in BASELINE_SEARCHES if e in entries and (g := gains(rows, e, tasks))["pooled"]}
    out: dict[str, Any] = {"tasks": tasks, "entries": {e: ours[e] for e in ranked}, "best": None,
                           "baselines": baselines}  # fmt: skip
    if not ranked:
        return out
    alpha = ALPHA / len(ranked)  # the best of several, judged on the items it was picked on
    meeting = [e for e in ranked if meets_goal(ours[e], alpha)]
    best = max(meeting or ranked, key=lambda e: ours[e]["average_gain"])
    g = ours[best]
    pooled = g["pooled"]
    out["best"] = best
    out["goal_vs_zero_shot"] = {
        "tasks_beaten": g["tasks_beaten"], "tasks": len(g["per_task"]), "average_gain": g["average_gain"],
        "pooled_diff": pooled["diff"], "pooled_p": pooled["p_value"], "pooled_n": pooled["n"],
        "alpha": alpha, "compared": len(ranked), "met": best in meeting,
    }  # fmt: skip
    for native in NATIVES:
        common = [t for t in tasks if accuracy(rows, t, native) and accuracy(rows, t, best)]
        # a native cell that failed (e.g. DSPy stopped by the cap before it compiled a program)
        missing = [t for t in tasks if accuracy(rows, t, best) and not accuracy(rows, t, native)
                   and any(r["task"] == t and r["entry"] == native for r in tried)]  # fmt: skip
        if not common:
            out[f"goal_vs_{native}"] = {
                "met": None,
                "why": f"no task where both {best} and {native} finished",
            }
            continue
        mine, theirs = mean_accuracy(rows, best, common), mean_accuracy(rows, native, common)
        assert mine is not None and theirs is not None
        my_calls, their_calls = (
            statistics.mean(calls_to_find(r) for t in common for r in cells(rows, t, e))
            for e in (best, native)
        )
        out[f"goal_vs_{native}"] = {
            "tasks": common, "best_accuracy": mine, "native_accuracy": theirs, "not_finished": missing,
            "best_calls": my_calls, "native_calls": their_calls, "met": mine > theirs and my_calls <= their_calls,
        }  # fmt: skip
    return out


def calls_to_find(row: Row) -> int:
    """A finished cell's calls to find its prompt: its search and its full-dev selection
    (a native cell: DSPy's own requests, see ``suite_cells.native_search_facts``)."""
    search = row.get("search") or {}
    return int(search.get("calls") or 0) + int(search.get("selection_calls") or 0)


def verdicts(rows: Sequence[Row]) -> list[dict[str, Any]]:
    """Per task and DSPy entry: the best promptopt search there with no more calls to
    find (mean over seeds), its paired difference, and the verdict (see the docstring)."""
    from promptopt.stats import paired_difference

    rows = finished(rows)
    entries = ordered([r["entry"] for r in rows])
    ours = [e for e in entries if is_promptopt_search(rows, e)]
    out: list[dict[str, Any]] = []
    for task in ordered([r["task"] for r in rows]):
        for dspy in [e for e in entries if e.startswith("dspy-") and cells(rows, task, e)]:
            budget = statistics.mean(calls_to_find(r) for r in cells(rows, task, dspy))
            verdict: dict[str, Any] = {"task": task, "dspy": dspy, "dspy_calls": budget,
                                       "dspy_accuracy": (accuracy(rows, task, dspy) or {}).get("accuracy"),
                                       "over": [], "best": None}  # fmt: skip
            candidates: list[dict[str, Any]] = []
            for entry in [e for e in ours if cells(rows, task, e)]:
                calls = statistics.mean(calls_to_find(r) for r in cells(rows, task, entry))
                if calls > budget:
                    verdict["over"].append({"entry": entry, "calls": calls})
                    continue
                a, b = pairs(rows, task, entry, reference=dspy)
                if a:
                    d = paired_difference(a, b)
                    candidates.append({"entry": entry, "calls": calls, "paired": d,
                                       "significant": d["diff"] > 0 and d["p_value"] < ALPHA})  # fmt: skip
            if candidates:
                verdict["best"] = max(candidates, key=lambda c: (c["significant"], c["paired"]["diff"]))
            best = verdict["best"]
            verdict["verdict"] = ("no eligible search" if best is None else "yes" if best["significant"]
                                  else "not shown" if best["paired"]["diff"] > 0 else "no")  # fmt: skip
            out.append(verdict)
    return out


def verdict_lines(found: Sequence[Mapping[str, Any]]) -> list[str]:
    lines = []
    for v in found:
        head = (f"VERDICT vs {v['dspy']} on {v['task']} (test {100 * (v['dspy_accuracy'] or 0):.1f}%, "
                f"{v['dspy_calls']:.0f} calls to find):")  # fmt: skip
        over = ", ".join(f"{o['entry']} ({o['calls']:.0f})" for o in v["over"])
        tail = f" Excluded for spending more calls: {over}." if over else ""
        best = v["best"]
        if best is None:
            what = "every promptopt search spent more calls" if over else "no promptopt search ran here"
            lines.append(f"{head} NO — {what}.{tail}")
            continue
        d = best["paired"]
        facts = (f"{best['entry']} {100 * d['diff']:+.1f} points [{100 * d['ci_low']:+.1f}, {100 * d['ci_high']:+.1f}], "
                 f"p={d['p_value']:.3g}, n={d['n']}, {best['calls']:.0f} calls")  # fmt: skip
        if v["verdict"] == "yes":
            lines.append(f"{head} YES — {facts}: significant at the 5% level.{tail}")
        elif v["verdict"] == "not shown":
            lines.append(f"{head} NOT SHOWN — best is {facts}: higher, but not significant at 5%.{tail}")
        else:
            lines.append(f"{head} NO — best is {facts}: not higher.{tail}")
    return lines


def mean_of(rows: Sequence[Row], entry: str, key: str) -> float | None:
    values = [
        r["search"][key]
        for r in rows
        if r["entry"] == entry and r.get("search") and r["search"].get(key) is not None
    ]
    return statistics.mean(values) if values else None


def entry_table(rows: Sequence[Row]) -> list[list[str]]:
    """Per entry: cells, mean task-model / proposer / judge calls per cell, tokens and
    wall time (search + test), reflection proposals accepted, mean test accuracy."""
    rows = finished(rows)
    tasks = ordered([r["task"] for r in rows])

    def fmt(value: float | None, spec: str = ".0f") -> str:
        return "–" if value is None else format(value, spec)

    table = [["entry", "cells", "task calls", "proposer calls", "judge calls", "tokens search+test",
              "wall s search+test", "reflections accepted", "mean test acc (tasks)"]]  # fmt: skip
    for entry in ordered([r["entry"] for r in rows]):
        mine = [r for r in rows if r["entry"] == entry]
        searched = [r["search"] for r in mine if r.get("search")]
        tokens = [(s.get("tokens") or 0) + r["test"]["tokens_in"] + r["test"]["tokens_out"]
                  for r in mine for s in [r.get("search") or {}]]  # fmt: skip
        wall = [
            (s.get("wall_s") or 0) + (r["test"].get("wall_s") or 0)
            for r in mine
            for s in [r.get("search") or {}]
        ]
        refl = [s["reflection"] for s in searched if s.get("reflection")]
        accepted = f"{sum(x['accepted'] for x in refl)}/{sum(x['proposals'] for x in refl)}" if refl else "–"
        acc = mean_accuracy(rows, entry, tasks)
        ran = sum(1 for t in tasks if cells(rows, t, entry))
        table.append([
            entry, str(len(mine)), fmt(mean_of(rows, entry, "task_calls")), fmt(mean_of(rows, entry, "proposer_calls")),
            fmt(mean_of(rows, entry, "judge_calls")), fmt(statistics.mean(tokens)), fmt(statistics.mean(wall)),
            accepted, "–" if acc is None else f"{100 * acc:.1f} ({ran})",
        ])  # fmt: skip
    return table


def task_table(rows: Sequence[Row]) -> list[list[str]]:
    """Per task and entry: test accuracy (95% CI) and the gain vs zero-shot CoT (p)."""
    rows = finished(rows)
    tasks = ordered([r["task"] for r in rows])
    entries = ordered([r["entry"] for r in rows])
    table = [["task", *entries]]
    for task in tasks:
        line = [task]
        for entry in entries:
            acc = accuracy(rows, task, entry)
            if acc is None:
                line.append("–")
                continue
            text = f"{100 * acc['accuracy']:.1f} ({100 * acc['ci95'][0]:.0f}–{100 * acc['ci95'][1]:.0f})"
            if entry != REFERENCE:
                a, b = pairs(rows, task, entry)
                if a:
                    from promptopt.stats import paired_difference

                    d = paired_difference(a, b)
                    text += f" {100 * d['diff']:+.1f} p={d['p_value']:.2g}"
            line.append(text)
        table.append(line)
    return table


def markdown(table: Sequence[Sequence[str]]) -> str:
    head, *body = table
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    lines += ["| " + " | ".join(row) + " |" for row in body]
    return "\n".join(lines)


def baseline_lines(summary: Mapping[str, Any]) -> list[str]:
    """The searches the issue names as baselines, against zero-shot CoT as the goal reads."""
    lines = []
    for entry, g in (summary.get("baselines") or {}).items():
        pooled = g["pooled"]
        lines.append(
            f"BASELINE {entry} (a baseline of the issue, not a promptopt entry for the goal): beats zero-shot CoT "
            f"on {g['tasks_beaten']} of {len(g['per_task'])} tasks, average gain {100 * g['average_gain']:+.1f} "
            f"points, pooled paired {100 * pooled['diff']:+.1f} points, p={pooled['p_value']:.3g} over {pooled['n']} "
            "item pairs"
        )
    return lines


def goal_lines(summary: Mapping[str, Any]) -> list[str]:
    best = summary.get("best")
    if best is None:
        return [
            "GOALS: no promptopt search entry has a result paired with zero-shot CoT yet.",
            *baseline_lines(summary),
        ]
    g = summary["goal_vs_zero_shot"]
    lines = [
        f"GOAL vs zero-shot CoT ({'MET' if g['met'] else 'NOT MET'}): best promptopt entry {best}: beats it on "
        f"{g['tasks_beaten']} of {g['tasks']} tasks (goal {GOAL_TASKS}), average gain {100 * g['average_gain']:+.1f} "
        f"points (goal +{100 * GOAL_GAIN:.0f}), pooled paired {100 * g['pooled_diff']:+.1f} points, "
        f"p={g['pooled_p']:.3g} over {g['pooled_n']} item pairs (goal p<{g['alpha']:.3g}: "
        f"{ALPHA} over the {g['compared']} {'entry' if g['compared'] == 1 else 'entries'} compared)"
    ]
    for native in NATIVES:
        v = summary.get(f"goal_vs_{native}")
        if v is None:
            continue
        if v["met"] is None:
            lines.append(f"GOAL vs {native}: not measured: {v['why']}")
            continue
        calls = f", calls to find {v['best_calls']:.0f} against {v['native_calls']:.0f} (goal: no more)"
        missing = v.get("not_finished") or []
        unfinished = f"; {native} did not finish on {', '.join(missing)}" if missing else ""
        lines.append(f"GOAL vs {native} ({'MET' if v['met'] else 'NOT MET'}): {best} {100 * v['best_accuracy']:.1f}% "
                     f"against {100 * v['native_accuracy']:.1f}% on average over {len(v['tasks'])} tasks{calls}"
                     f"{unfinished}")  # fmt: skip
    return lines + baseline_lines(summary)


def print_summary(rows: Sequence[Row]) -> dict[str, Any]:
    summary = goals(rows)
    print(markdown(entry_table(rows)))
    print()
    print(markdown(task_table(rows)))
    print()
    for line in goal_lines(summary) + verdict_lines(verdicts(rows)):
        print(line)
    done = {cell_key(r) for r in rows if r.get("status") == "ok"}
    unfinished = {cell_key(r): r for r in rows if r.get("status") != "ok"}
    for key, row in unfinished.items():  # the last failure of each cell that has no ok row
        if key in done:
            continue
        print(
            f"{row['task']} · {row['entry']} · seed {row['seed']}: {row['status']}: {row.get('reason', '')}"
        )
    return summary


def plot(rows: Sequence[Row], path: Path) -> bool:
    """Test accuracy per task, one bar per entry, with its 95% interval."""
    from benchmarks.plotting import figure, save

    rows = finished(rows)
    opened = figure("; the table is printed anyway")
    if opened is None or not rows:
        return False
    fig, ax = opened
    tasks = ordered([r["task"] for r in rows])
    entries = ordered([r["entry"] for r in rows])
    width = 0.8 / max(1, len(entries))
    for i, entry in enumerate(entries):
        xs: list[float] = []
        ys: list[float] = []
        errs: list[list[float]] = [[], []]
        for j, task in enumerate(tasks):
            acc = accuracy(rows, task, entry)
            if acc is None:
                continue
            xs.append(j + (i - (len(entries) - 1) / 2) * width)
            ys.append(100 * acc["accuracy"])
            errs[0].append(100 * (acc["accuracy"] - acc["ci95"][0]))
            errs[1].append(100 * (acc["ci95"][1] - acc["accuracy"]))
        ax.bar(xs, ys, width=width, yerr=errs, capsize=2, label=entry)
    ax.set_xticks(range(len(tasks)))
    ax.set_xticklabels(tasks, rotation=20, fontsize=8)
    ax.set_ylabel("held-out test accuracy, % (95% CI)")
    models = ", ".join(ordered([r["model"] for r in rows]))
    ax.set_title(f"benchmark suite · {models} · seeds pooled", fontsize=9)
    save(fig, ax, path)
    return True


def rows_of_files(paths: Sequence[Path]) -> list[Row]:
    """The rows of several ``--out`` files, in order: a summary over runs kept apart (a
    setting such as ``--space`` or ``--selection`` is a file of its own). A finished cell
    found in two files with different settings is reported on stderr: the later file's
    row is the one summarised."""
    from benchmarks.suite import read_rows

    rows: list[Row] = []
    seen: dict[tuple[Any, ...], tuple[Path, Any]] = {}
    for path in paths:
        for row in read_rows(path):
            key = cell_key(labelled(row))
            if row.get("status") == "ok":
                earlier = seen.get(key)
                differs = earlier is not None and earlier[0] != path and earlier[1] != row.get("settings")
                # (a baseline's row is its prompt's, whatever the flags)
                if differs and row.get("kind") == "search":
                    print(f"{path}: cell {' · '.join(map(str, key))} is also in {earlier[0]} with other settings: "
                          f"this file's row is used", file=sys.stderr)  # fmt: skip
                seen[key] = (path, row.get("settings"))
            rows.append(row)
    return rows


def summary_command(args: Any) -> int:
    paths = [Path(p) for p in ([args.out] if isinstance(args.out, str) else args.out)]
    rows = rows_of_files(paths)
    if not rows:
        print(f"{', '.join(map(str, paths))}: no rows", flush=True)
        return 2
    if args.json:
        print(json.dumps({**goals(rows), "verdicts": verdicts(rows)}, indent=1, default=str))
    else:
        print_summary(rows)
    if args.markdown:
        text = (
            markdown(entry_table(rows))
            + "\n\n"
            + markdown(task_table(rows))
            + "\n\n"
            + "\n".join(f"- {line}" for line in goal_lines(goals(rows)) + verdict_lines(verdicts(rows)))
        )
        Path(args.markdown).write_text(text + "\n")
    first = paths[0]  # several files: a plot of their own beside the first
    picture = Path(args.plot) if args.plot else first.with_suffix(".png") if len(paths) == 1 else (
        first.with_name(f"{first.stem}+{len(paths) - 1}.png"))  # fmt: skip
    if plot(rows, picture):  # (with --json, stdout is the JSON alone)
        print(f"wrote {picture}", file=sys.stderr if args.json else sys.stdout)
    return 0
