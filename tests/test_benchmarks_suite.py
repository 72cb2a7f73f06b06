"""benchmarks/suite.py (issue #21): a tiny grid end to end on the fake model, resume
without recomputing, the ``reflect`` entry's own counts,
and the summary's arithmetic on hand-made rows."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import pytest

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from benchmarks import suite, suite_report  # noqa: E402

TINY = ["run", "--model", "fake", "--tasks", "gsm-symbolic", "--max-calls", "60", "--dev-size", "8",
        "--test-size", "20", "--rounds", "2", "--proposals", "3", "--race-start", "4"]  # fmt: skip


def rows_of(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def test_tiny_grid_runs_end_to_end_then_resumes_without_recomputing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "suite.jsonl"
    common = [*TINY, "--out", str(out)]
    assert suite.main([*common, "--entries", "zero-shot-cot,bootstrap-random,tpe,reflect"]) == 0
    rows = rows_of(out)
    assert [(r["entry"], r["seed"], r["status"]) for r in rows] == [
        ("zero-shot-cot", 0, "ok"), ("bootstrap-random", 0, "ok"), ("tpe", 0, "ok"), ("reflect", 0, "ok"),
    ]  # fmt: skip
    reflection = rows[3]["search"]["reflection"]  # reflect's own counts reach the table
    assert reflection["proposals"] >= 1 and 0 <= reflection["accepted"] <= reflection["proposals"]
    for row in rows:
        test = row["test"]
        assert test["n"] == 20 and len(test["scores"]) == 20  # per-item results, for the paired tests
        assert {"code_answers", "output_blocks", "no_answer"} <= set(test)  # baselines.py's columns
        assert row["settings"]["max_calls"] == 60 and row["model_id"]
    assert rows[0]["search"] is None
    for row in rows[1:]:
        search = row["search"]
        assert 0 < search["calls"] <= 60 + 16  # the cap, give or take the last batch
        assert search["task_calls"] + search["proposer_calls"] == search["calls"]
        assert search["tokens"] > 0 and search["judge_calls"] == 0
    captured = capsys.readouterr()
    printed = captured.out
    assert "| bootstrap-random |" in printed and "GOAL vs zero-shot CoT" in printed
    assert captured.err.count("   ok: test ") == 4 and "search " in captured.err  # a line per finished cell

    computed: list[tuple[str, str, int]] = []
    real = suite.compute_cell

    def counting(args: Any, task: str, entry: Any, seed: int, cap: int | None = None) -> dict[str, Any]:
        computed.append((task, entry.name, seed))
        return real(args, task, entry, seed, cap)

    monkeypatch.setattr(suite, "compute_cell", counting)
    assert (
        suite.main([*common, "--entries", "zero-shot-cot,bootstrap-random", "--seeds", "0,1", "--resume"])
        == 0
    )
    # seed 0's cells were done: only seed 1's ran, appended after them
    assert computed == [("gsm-symbolic", "zero-shot-cot", 1), ("gsm-symbolic", "bootstrap-random", 1)]
    again = rows_of(out)
    assert again[:4] == rows and [(r["entry"], r["seed"]) for r in again[4:]] == [
        ("zero-shot-cot", 1),
        ("bootstrap-random", 1),
    ]
    # the zero-shot prompt does not search: its seed-1 test is the same prompt, answered by the cache
    assert again[4]["test"]["scores"] == rows[0]["test"]["scores"] and again[4]["test"]["cache_hits"] == 20

    # without --resume, or with other settings, the file is refused
    assert suite.main([*common, "--entries", "zero-shot-cot"]) == 2
    other = [*common[:-2], "--max-calls", "70", "--out", str(out)]
    assert suite.main([*other, "--entries", "zero-shot-cot", "--resume"]) == 2

    markdown = tmp_path / "suite.md"
    plot = tmp_path / "suite.png"
    assert suite.main(["summary", "--out", str(out), "--markdown", str(markdown), "--plot", str(plot)]) == 0
    text = markdown.read_text()
    assert "| zero-shot-cot |" in text and "GOAL vs zero-shot CoT" in text
    try:
        import matplotlib  # noqa: F401
    except ImportError:
        return
    assert plot.stat().st_size > 0


def row(task: str, entry: str, scores: list[int], *, seed: int = 0, kind: str = "search",
        status: str = "ok", task_calls: int | None = 100) -> dict[str, Any]:  # fmt: skip
    return {
        "task": task, "entry": entry, "seed": seed, "model": "m", "kind": kind, "status": status,
        "test": {"scores": {f"{task}-{i}": float(s) for i, s in enumerate(scores)}, "tokens_in": 10,
                 "tokens_out": 5, "wall_s": 1.0},
        "search": None if kind == "baseline" else {"task_calls": task_calls, "calls": task_calls,
                                                    "proposer_calls": 3, "judge_calls": 0,
                                                    "tokens": 50, "wall_s": 2.0,
                                                    "reflection": {"proposals": 4, "accepted": 1}},
    }  # fmt: skip


HAND_MADE = [
    row("t1", "zero-shot-cot", [1] * 5 + [0] * 5, kind="baseline"),
    row("t1", "tpe", [0] * 10, task_calls=999),  # superseded by the later row of the same cell
    row("t1", "tpe", [1] * 8 + [0] * 2),
    row("t1", "tpe", [1] * 10, seed=1),  # an item's score is the mean of the two seeds' scores
    row("t1", "reflect", [1] * 10, status="failed"),  # not finished: not counted
    row("t2", "zero-shot-cot", [1, 0, 0, 0], kind="baseline"),
    row("t2", "tpe", [1, 1, 0, 0]),
    row("t1", "dspy-gepa-native", [1] * 6 + [0] * 4, kind="native", task_calls=150),
]


def test_summary_math_on_hand_made_rows() -> None:
    summary = suite_report.goals(HAND_MADE)
    assert summary["tasks"] == ["t1", "t2"] and summary["best"] == "tpe"
    tpe = summary["entries"]["tpe"]
    t1, t2 = tpe["per_task"]["t1"], tpe["per_task"]["t2"]
    # t1, 10 items (not 20: two seeds score the same items): zero-shot CoT's 5 right stay
    # right, 3 gained by both seeds (+1 each), 2 by seed 1 only (+0.5 each); the scores are
    # no longer 0/1, so the p-value is the sign-flip permutation's: 2 of 2^5 sign patterns
    assert t1["n"] == 10 and t1["diff"] == pytest.approx(4 / 10)
    assert t1["p_value"] == pytest.approx(2 / 32, abs=0.02)
    assert t2["n"] == 4 and t2["diff"] == pytest.approx(0.25) and t2["p_value"] == pytest.approx(1.0)
    assert tpe["tasks_beaten"] == 2 and tpe["average_gain"] == pytest.approx((0.4 + 0.25) / 2)
    pooled = tpe["pooled"]  # 14 pairs, 6 gained (4 by 1, 2 by 0.5), none lost: 2 of 2^6 patterns
    assert pooled["n"] == 14 and pooled["diff"] == pytest.approx(5 / 14)
    assert pooled["p_value"] == pytest.approx(2 / 64, abs=0.015)
    assert pooled["ci_low"] > 0
    goal = summary["goal_vs_zero_shot"]
    assert goal["tasks_beaten"] == 2 and not goal["met"]  # 2 tasks of the 4 the goal asks
    native = summary["goal_vs_dspy-gepa-native"]
    assert native["tasks"] == ["t1"] and native["met"]
    assert native["best_accuracy"] == pytest.approx(18 / 20) and native["native_accuracy"] == pytest.approx(
        0.6
    )
    assert native["best_calls"] == 100 and native["native_calls"] == 150
    assert native["not_finished"] == []  # tpe has t2, where DSPy's GEPA was not run: not "did not finish"
    assert summary["goal_vs_dspy-mipro-native"]["met"] is None
    # more accurate, but with more calls to find its prompt than the native: not at equal calls
    cheap = [r for r in HAND_MADE if r["entry"] != "dspy-gepa-native"]
    cheap.append(row("t1", "dspy-gepa-native", [1] * 6 + [0] * 4, kind="native", task_calls=90))
    assert not suite_report.goals(cheap)["goal_vs_dspy-gepa-native"]["met"]
    table = {line[0]: line for line in suite_report.entry_table(HAND_MADE)}
    assert table["tpe"][1:4] == ["3", "100", "3"] and table["tpe"][7] == "3/12"
    assert table["tpe"][8] == "70.0 (2)"  # t1 90% (8 items right, 2 right in one seed of two), t2 50%
    assert table["zero-shot-cot"][2] == "–" and "reflect" not in table
    lines = suite_report.goal_lines(summary)
    assert lines[0].startswith(
        "GOAL vs zero-shot CoT (NOT MET): best promptopt entry tpe: beats it on 2 of 2"
    )


def test_a_search_taught_by_another_model_is_an_entry_of_its_own() -> None:
    taught = {**row("t1", "tpe", [1] * 10), "settings": {"demo_teacher": "proposer"}}
    summary = suite_report.goals([*HAND_MADE, taught])
    assert set(summary["entries"]) == {"tpe", "tpe+teacher"}  # both kept, not one replacing the other
    assert summary["entries"]["tpe+teacher"]["per_task"]["t1"]["diff"] == pytest.approx(0.5)
    assert summary["goal_vs_zero_shot"]["compared"] == 2


def test_the_summary_lists_the_cells_left_unfinished_and_the_tasks_a_native_entry_missed(
    capsys: pytest.CaptureFixture[str],
) -> None:
    rows = [
        row("t2", "dspy-gepa-native", [0] * 4, kind="native", status="failed"),  # never finished
        row("t1", "dspy-gepa-native", [0] * 10, kind="native", status="failed"),  # finished later
        *HAND_MADE,
    ]
    rows[0]["reason"], rows[1]["reason"] = "the budget ran out before DSPy compiled", "MissingDependencyError"
    suite_report.print_summary(rows)
    out = capsys.readouterr().out
    assert "dspy-gepa-native did not finish on t2" in out
    assert "t2 · dspy-gepa-native · seed 0: failed: the budget ran out before DSPy compiled" in out
    assert "t1 · reflect · seed 0: failed" in out
    assert "MissingDependencyError" not in out  # superseded by the cell's ok row


def test_the_goal_is_met_only_with_enough_tasks_significance_and_gain() -> None:
    tasks = [f"t{i}" for i in range(4)]
    rows = [row(t, "zero-shot-cot", [0] * 10, kind="baseline") for t in tasks]
    rows += [row(t, "reflect", [1] * 1 + [0] * 9) for t in tasks]  # +10 points each: 4 gained, 0 lost
    goal = suite_report.goals(rows)["goal_vs_zero_shot"]
    assert goal["tasks_beaten"] == 4 and goal["average_gain"] == pytest.approx(0.1)
    assert goal["pooled_p"] == pytest.approx(2 * 0.5**4) and not goal["met"]  # p = 0.125: not significant
    rows = [r for r in rows if r["entry"] != "reflect"]
    rows += [row(t, "reflect", [1] * 3 + [0] * 7) for t in tasks]
    goal = suite_report.goals(rows)["goal_vs_zero_shot"]
    assert goal["met"] and goal["pooled_p"] == pytest.approx(2 * 0.5**12) and goal["alpha"] == 0.05


def test_the_goal_level_is_divided_among_the_entries_compared() -> None:
    # one entry: +10 points on each of 4 tasks of 20 items, 8 gained, 0 lost: p = 2^-7
    tasks = [f"t{i}" for i in range(4)]
    rows = [row(t, "zero-shot-cot", [0] * 20, kind="baseline") for t in tasks]
    rows += [row(t, "tpe", [1] * 2 + [0] * 18) for t in tasks]
    assert suite_report.goals(rows)["goal_vs_zero_shot"]["met"]  # 0.0078 < 0.05
    # the same entry beside six others that gained nothing: 0.0078 is not below 0.05 / 7
    for other in ("random", "reinforce", "ape", "opro", "reflect", "reflect-demos"):
        rows += [row(t, other, [0] * 20) for t in tasks]
    summary = suite_report.goals(rows)
    goal = summary["goal_vs_zero_shot"]
    assert summary["best"] == "tpe" and goal["compared"] == 7 and not goal["met"]
    assert goal["alpha"] == pytest.approx(0.05 / 7)
    assert "(goal p<0.00714: 0.05 over the 7 entries compared)" in suite_report.goal_lines(summary)[0]


def test_seeds_score_each_item_once_and_models_are_never_pooled() -> None:
    one = [row("t", "zero-shot-cot", [0] * 10, kind="baseline"), row("t", "tpe", [1] * 4 + [0] * 6)]
    twice = [*one, row("t", "tpe", [1] * 4 + [0] * 6, seed=1)]  # the same answers again
    assert suite_report.goals(one)["entries"] == suite_report.goals(twice)["entries"]
    other_model = [{**r, "model": "big"} for r in one]
    other_model[1] = {**other_model[1], "test": {**other_model[1]["test"],
                                                 "scores": {f"t-{i}": 0.0 for i in range(10)}}}  # fmt: skip
    summary = suite_report.goals([*one, *other_model])
    assert summary["tasks"] == ["t · m", "t · big"]
    per_task = summary["entries"]["tpe"]["per_task"]
    assert per_task["t · m"]["diff"] == pytest.approx(0.4) and per_task["t · big"]["diff"] == 0


def test_search_gsm8k_is_a_suite_command() -> None:
    from benchmarks import search_gsm8k

    argv = search_gsm8k.suite_argv(["--policies", "ape", "opro", "--search", "cot_trigger", "--db", "x.db"])
    args = suite.parse_args(argv)
    assert args.entry_list == ["zero-shot-cot", "ape", "opro"] and args.slot == "cot_trigger"
    assert args.max_calls is None and args.rounds is None and args.proposals is None  # the preset's sizes
    assert (args.preset, args.dev_size, args.test_size, args.db) == ("light", 30, 200, "sqlite:///x.db")


def test_baselines_is_a_suite_command() -> None:
    from benchmarks import baselines

    args = suite.parse_args(baselines.suite_argv(["--only", "plain", "8-shot CoT", "--limit", "50"]))
    assert args.entry_list == ["plain", "8-shot-cot"] and args.test_size == 50 and args.resume
    assert [suite.ENTRIES[e].baseline for e in args.entry_list] == ["plain", "8-shot CoT"]


def test_three_shot_cot_is_the_tasks_own_worked_demos(data_dir: Path) -> None:
    """On BBH, the 3-shot-cot baseline (and ``--start 3-shot-cot``) is the paper's 3-shot
    CoT prompt: the task's three fixed demos, none from the train split."""
    from benchmarks.suite_cells import start_prompt
    from promptopt.tasks import get_task

    task = get_task("bbh:date_understanding", data_dir)
    prompt = start_prompt(task, suite.ENTRIES["3-shot-cot"].baseline or "", 256)
    assert prompt.demo_ids == ("cot-0", "cot-1", "cot-2") and prompt.cot_mode == "few_shot"
    assert suite.parse_args(["run", "--start", "3-shot-cot"]).start == "3-shot-cot"


def test_policies_benchmark_is_a_suite_command(tmp_path: Path) -> None:
    import argparse

    from benchmarks import policies

    args = argparse.Namespace(model="fake", task="gsm-symbolic", policies="random,tpe", seeds=3, max_calls=600,
                              dev_size=32, test_size=60, n_proposals=6, rounds=12, race_start=8, batch_size=16,
                              max_new_tokens=384, space=None, data_dir=None)  # fmt: skip
    parsed = suite.parse_args(policies.suite_argv(args, "sqlite://", tmp_path / "p.jsonl"))
    assert (
        parsed.entry_list == ["random", "tpe"] and parsed.seed_list == [0, 1, 2] and parsed.start == "plain"
    )
    assert (parsed.max_calls, parsed.dev_size, parsed.test_size, parsed.max_new_tokens) == (600, 32, 60, 384)


def test_dry_run_prints_each_cells_bound(capsys: pytest.CaptureFixture[str]) -> None:
    assert suite.main([*TINY, "--entries", "zero-shot-cot,bootstrap-random,reflect", "--dry-run"]) == 0
    lines = {line.split()[1]: line.split()[2:] for line in capsys.readouterr().out.splitlines()[2:]}
    assert lines["zero-shot-cot"] == ["–", "–", "20"]
    assert int(lines["bootstrap-random"][0]) <= 60 + 16  # the cap, plus one batch
    assert int(lines["reflect"][0]) <= 60 + 16  # the cap bounds reflect's plan too


def test_a_worker_cell_that_fails_writes_a_row_that_says_why(tmp_path: Path) -> None:
    """The dspy worker's row names the failure (a missing package, an unknown task), not
    just its exit code."""
    result = tmp_path / "cell.json"
    args = [
        *TINY,
        "--out",
        str(tmp_path / "s.jsonl"),
        "--cell",
        "nope|zero-shot-cot|0",
        "--result-file",
        str(result),
    ]
    assert suite.main(args) == 0
    row = json.loads(result.read_text())
    assert row["status"] == "failed" and "nope" in row["reason"] and row["entry"] == "zero-shot-cot"


def test_match_calls_caps_each_search_and_its_selection_at_the_reference(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """``--match-calls tpe``: tpe runs first in its task and seed, whatever the order of
    --entries; bootstrap-random's search and its full-dev selection together are capped at
    tpe's calls to find."""
    out = tmp_path / "m.jsonl"
    # a high cap, one round: tpe stops by its rounds, so the matched cap binds below --max-calls
    common = [*TINY[:5], "--max-calls", "300", "--dev-size", "8", "--test-size", "10", "--rounds", "1",
              "--proposals", "3", "--race-start", "4", "--out", str(out)]  # fmt: skip
    assert suite.main([*common, "--entries", "bootstrap-random,tpe", "--match-calls", "tpe"]) == 0
    rows = rows_of(out)
    assert [r["entry"] for r in rows] == ["tpe", "bootstrap-random"]
    tpe, matched = rows
    cap = suite_report.calls_to_find(tpe)
    assert 0 < cap < 300 and tpe["search"]["cap"] == 300 and tpe["search"]["matched_to"] is None
    assert matched["search"]["cap"] == cap and matched["search"]["matched_to"] == "tpe"
    assert suite_report.calls_to_find(matched) <= cap  # the selection inside the cap
    assert f"capped at {cap} calls, the final selection included: tpe's" in capsys.readouterr().err
    # resumed with the same flags: nothing runs again
    assert suite.main([*common, "--entries", "bootstrap-random,tpe", "--match-calls", "tpe", "--resume"]) == 0
    assert len(rows_of(out)) == 2
    # without the match, the capped cell is not this grid's cell: it runs again, uncapped
    assert suite.main([*common, "--entries", "bootstrap-random", "--resume"]) == 0
    again = rows_of(out)
    assert len(again) == 3 and again[2]["search"]["cap"] == 300 and again[2]["search"]["matched_to"] is None
    assert "searched with cap" in capsys.readouterr().err
    # a reference that has not run: the matched cell is skipped, and says why
    other = [*common[:-1], str(tmp_path / "n.jsonl")]
    assert suite.main([*other, "--entries", "bootstrap-random", "--match-calls", "tpe"]) == 0
    skipped = rows_of(tmp_path / "n.jsonl")
    assert [r["status"] for r in skipped] == ["skipped"]
    assert "--match-calls tpe: no finished cell on gsm-symbolic, seed 0" in skipped[0]["reason"]


@pytest.mark.parametrize(
    ("flag", "message"),
    [
        (["--match-calls", "dspy-miprov"], "--match-calls 'dspy-miprov': not an entry"),
        (["--match-calls", "plain"], "a baseline does not search"),
        (["--dspy-share", "2"], "--dspy-share 2.0: must be above 0 and at most 1"),
        (["--dspy-threads", "0"], "--dspy-threads 0: must be at least 1"),
        (["--demo-teacher", "proposer"], "--demo-teacher proposer: give a --proposer-model"),
    ],
)
def test_bad_options_are_refused_up_front(
    flag: list[str], message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit):
        suite.parse_args([*TINY, *flag])
    assert message in capsys.readouterr().err


def calls_row(task: str, entry: str, scores: list[int], calls: int, kind: str = "search") -> dict[str, Any]:
    made = row(task, entry, scores, kind=kind)
    made["search"].update(calls=calls - 20, selection_calls=20)
    return made


def test_verdict_needs_higher_test_accuracy_significantly_and_no_more_calls() -> None:
    dspy = calls_row("t", "dspy-mipro", [1] * 20 + [0] * 20, 500)
    better = [1] * 20 + [1] * 15 + [0] * 5  # 15 more right, none lost: McNemar p < 0.001
    slightly = [1] * 20 + [1] * 2 + [0] * 18  # 2 more right: not significant

    def lines(*rows: dict[str, Any]) -> list[str]:
        return suite_report.verdict_lines(suite_report.verdicts(rows))

    [found] = suite_report.verdicts([dspy, calls_row("t", "tpe", better, 480)])
    assert found["verdict"] == "yes" and found["best"]["paired"]["diff"] == pytest.approx(15 / 40)
    assert "YES" in lines(dspy, calls_row("t", "tpe", better, 480))[0]
    [text] = lines(dspy, calls_row("t", "tpe", better, 501))
    assert "NO — every promptopt search spent more calls" in text and "tpe (501)" in text
    [text] = lines(dspy, calls_row("t", "reflect", slightly, 400))
    assert "NOT SHOWN" in text and "not significant" in text
    [text] = lines(dspy, calls_row("t", "reflect", [0] * 40, 400))
    assert (
        text.startswith("VERDICT vs dspy-mipro on t (test 50.0%, 500 calls to find)")
        and "NO — best is" in text
    )
    # the best eligible search is the verdict's, a dearer better one is named as excluded
    [text] = lines(dspy, calls_row("t", "reflect", slightly, 400), calls_row("t", "tpe", better, 900))
    assert "NOT SHOWN — best is reflect" in text and "Excluded for spending more calls: tpe (900)" in text
    # a task without a DSPy cell has no verdict
    assert suite_report.verdicts([calls_row("u", "tpe", better, 10)]) == []


def test_an_entry_passes_its_policys_own_options() -> None:
    from benchmarks.suite_cells import ENTRIES
    from promptopt.tasks import get_task

    args = suite.parse_args([*TINY, "--entries", "reflect-demos"])
    task = get_task("gsm-symbolic")
    made = suite.search_config(args, "gsm-symbolic", task, ENTRIES["reflect-demos"], 0)
    assert made.policy == "reflect" and made.policy_options["reflect_demos"] == 4
    plain_reflect = suite.search_config(args, "gsm-symbolic", task, ENTRIES["reflect"], 0)
    assert plain_reflect.policy_options["reflect_demos"] == 0


def test_the_wan_baseline_is_printed_beside_the_goal_but_does_not_meet_it() -> None:
    tasks = [f"t{i}" for i in range(4)]
    rows = [row(t, "zero-shot-cot", [0] * 10, kind="baseline") for t in tasks]
    rows += [row(t, "bootstrap-random", [1] * 3 + [0] * 7) for t in tasks]  # what meets the goal as tpe
    summary = suite_report.goals(rows)
    assert summary["best"] is None and "goal_vs_zero_shot" not in summary
    lines = suite_report.goal_lines(summary)
    assert lines[0].startswith("GOALS: no promptopt search entry")
    assert lines[1].startswith("BASELINE bootstrap-random (a baseline of the issue, not a promptopt entry for the goal): "
                               "beats zero-shot CoT on 4 of 4 tasks, average gain +30.0 points")  # fmt: skip
    rows += [row(t, "tpe", [1] * 3 + [0] * 7) for t in tasks]
    summary = suite_report.goals(rows)
    assert summary["best"] == "tpe" and summary["goal_vs_zero_shot"]["compared"] == 1
    assert suite_report.goal_lines(summary)[-1].startswith("BASELINE bootstrap-random")


def test_selection_is_a_setting_of_the_cells_when_it_is_not_the_default() -> None:
    from benchmarks.suite_cells import ENTRIES
    from promptopt.tasks import get_task

    best = suite.parse_args([*TINY, "--entries", "tpe"])
    assert "selection" not in suite.settings(best)  # rows from before the flag resume as they were
    balanced = suite.parse_args([*TINY, "--entries", "tpe", "--selection", "balanced"])
    assert suite.settings(balanced)["selection"] == "balanced"
    made = suite.search_config(balanced, "gsm-symbolic", get_task("gsm-symbolic"), ENTRIES["tpe"], 0)
    assert made.selection == "balanced"


def test_a_dspy_python_on_another_engine_is_refused_before_any_cell(tmp_path: Path) -> None:
    args = suite.parse_args(["run", "--model", "qwen2.5-coder-0.5b", "--entries", "dspy-gepa-native",
                             "--dspy-python", sys.executable])  # fmt: skip
    assert suite.engine_mismatch(args) is None  # the same Python picks the same engine
    other = tmp_path / "python"  # a dspy venv whose promptopt would run the model on llama.cpp
    other.write_text("#!/bin/sh\necho llama.cpp\n")
    other.chmod(0o755)
    args.dspy_python = str(other)
    problem = suite.engine_mismatch(args)
    assert problem is not None and "on llama.cpp in" in problem and "install the same engine" in problem
    args.model = "fake-dspy"
    assert suite.engine_mismatch(args) is None


def test_summary_reads_several_files_as_one_and_names_a_cell_run_with_other_settings(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    first, second = tmp_path / "a.jsonl", tmp_path / "b.jsonl"
    base = [r for r in HAND_MADE if r["entry"] != "dspy-gepa-native"]
    native = [r for r in HAND_MADE if r["entry"] == "dspy-gepa-native"]
    first.write_text("".join(json.dumps({**r, "settings": {"space": None}}) + "\n" for r in base))
    second.write_text("".join(json.dumps({**r, "settings": {"space": None}}) + "\n" for r in native))
    assert suite.main(["summary", "--out", str(first), str(second), "--json"]) == 0
    out = json.loads(capsys.readouterr().out)  # stdout is the JSON alone (the plot's line: stderr)
    assert out["goal_vs_dspy-gepa-native"]["tasks"] == ["t1"]  # the native rows of the second file
    # the same cell in both files with other settings: said, and the later row is summarised
    better = row("t2", "tpe", [1, 1, 1, 1])
    second.write_text(json.dumps({**better, "settings": {"space": "demos"}}) + "\n")
    assert suite.main(["summary", "--out", str(first), str(second), "--json"]) == 0
    captured = capsys.readouterr()
    assert "cell t2 · tpe · 0 · m is also in" in captured.err and "other settings" in captured.err
    summary = json.loads(captured.out)
    assert summary["entries"]["tpe"]["per_task"]["t2"]["diff"] == pytest.approx(0.75)


def test_a_native_entry_that_did_not_finish_is_named_with_rows_of_two_models() -> None:
    """With rows of two models each task is named with its model ("t2 · m1"): the failed
    native cell must be found under that name too."""
    rows = [{**r, "model": "m1"} for r in HAND_MADE]
    rows.append({**row("t2", "dspy-gepa-native", [0] * 4, kind="native", status="failed"), "model": "m1"})
    rows.append({**row("t3", "zero-shot-cot", [1, 0], kind="baseline"), "model": "m2"})
    native = suite_report.goals(rows)["goal_vs_dspy-gepa-native"]
    assert native["tasks"] == ["t1 · m1"] and native["not_finished"] == ["t2 · m1"]
