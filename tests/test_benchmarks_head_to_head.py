"""benchmarks/head_to_head.py (issue #8): the program runs end to end on the fake model,
writes one JSON line per entry as it finishes, resumes, and its verdict follows the
paired test. No dspy here: the dspy-* entries need the dspy venv and are covered by
tests/test_dspy_interop.py."""

from __future__ import annotations

import importlib.util
import json
import re
import subprocess
import sys
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

REPO = Path(__file__).resolve().parent.parent
PROGRAM = REPO / "benchmarks" / "head_to_head.py"
TINY = ["--model", "fake", "--policies", "random,ape", "--baselines", "zero-shot-cot", "--max-calls", "60",
        "--dev-size", "8", "--test-limit", "12", "--rounds", "3"]  # fmt: skip


def load_program() -> ModuleType:
    spec = importlib.util.spec_from_file_location("head_to_head", PROGRAM)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def run(tmp_path: Path, *extra: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, str(PROGRAM), *TINY, "--out-dir", str(tmp_path / "out"), *extra],
                          capture_output=True, text=True, timeout=300, cwd=tmp_path)  # fmt: skip


@pytest.mark.slow
def test_fake_run_writes_every_entry_prints_the_table_and_resumes(tmp_path: Path) -> None:
    first = run(tmp_path)
    assert first.returncode == 0, first.stderr[-3000:]
    out = tmp_path / "out"
    rows = [json.loads(line) for line in (out / "fake-tiny-add.jsonl").read_text().splitlines()]
    assert [r["name"] for r in rows] == ["zero-shot CoT", "random", "ape"]
    for row in rows:
        assert row["status"] == "ok"
        assert row["settings"]["max_calls"] == 60 and row["settings"]["test_limit"] == 12
        test = row["test"]
        assert test["n"] == 12 and len(test["scores"]) == 12
        assert 0.0 <= test["ci95"][0] <= test["accuracy"] <= test["ci95"][1] <= 1.0
        for key in ("requests", "model_calls", "cache_hits", "tokens_in", "tokens_out", "wall_s"):
            assert key in test
        assert row["prompt"]["instruction"] and row["prompt_summary"]
    assert rows[0]["search"] is None  # a baseline does not search
    for row in rows[1:]:
        search = row["search"]
        # the cap holds, give or take the last batch of the search
        assert 0 < search["calls"] <= 60 + 16
        assert search["calls_to_find"] == search["calls"] + search["selection_calls"]
        assert search["tokens_in"] > 0 and search["wall_s"] >= 0
        assert (
            Path(search["db"]).name == f"{row['name']}.db" and Path(search["db"]).is_file()
        )  # its own store

    # the test evaluation reports its progress; each entry's last report agrees with its row
    finals = re.findall(r"test: 12/12 items, ([\d.]+) right so far, [\d.]+ min", first.stderr)
    assert [float(n) for n in finals] == pytest.approx([r["test"]["accuracy"] * 12 for r in rows]), (
        first.stderr[-2000:]
    )
    assert "entry" in first.stdout and "test acc" in first.stdout and "Δ vs zero-shot CoT" in first.stdout
    for name in ("zero-shot CoT", "random", "ape"):
        assert any(line.startswith(name) for line in first.stdout.splitlines()), name
    assert "VERDICT: no DSPy result to compare with (none was run)." in first.stdout
    for row in rows[1:]:  # best dev so far against calls, as the search reported it
        trace = row["search"]["trace"]
        assert trace and all(0.0 <= best <= 1.0 for _, best, _ in trace)
        assert [c for c, _, _ in trace] == sorted(c for c, _, _ in trace) and trace[-1][0] <= row["search"][
            "calls_to_find"
        ]
    assert (out / "head_to_head-fake-tiny-add.png").stat().st_size > 10_000
    summaries = list(out.glob("head_to_head-fake-*.json"))
    assert len(summaries) == 1
    summary = json.loads(summaries[0].read_text())
    assert [r["name"] for r in summary["rows"]] == ["zero-shot CoT", "random", "ape"]
    assert summary["verdict"] and summary["comparisons"] == []

    refused = run(tmp_path)  # the file exists: an accidental rerun must not mix two runs
    assert refused.returncode == 2 and "--resume" in refused.stderr
    other = run(tmp_path, "--resume", "--test-limit", "10")
    assert other.returncode == 2 and "other settings" in other.stderr
    resumed = run(tmp_path, "--resume")
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert resumed.stdout.count("skipped (--resume)") == 3
    assert len((out / "fake-tiny-add.jsonl").read_text().splitlines()) == 3


@pytest.mark.slow
def test_a_finished_search_run_again_from_its_cache_keeps_its_first_wall_time(tmp_path: Path) -> None:
    # A search that finished but whose row was never written (its test was stopped): --resume
    # runs it again from its store's cache, and the row keeps the first run's wall time.
    assert run(tmp_path, "--policies", "random").returncode == 0
    results = tmp_path / "out" / "fake-tiny-add.jsonl"
    first = [json.loads(line) for line in results.read_text().splitlines()]
    results.write_text(json.dumps(first[0]) + "\n")  # the baseline's row only
    again = run(tmp_path, "--policies", "random", "--resume")
    assert again.returncode == 0, again.stderr[-3000:]
    assert "its response cache answers" in again.stderr
    row = json.loads(results.read_text().splitlines()[-1])
    assert row["name"] == "random" and row["search"]["warm_cache"]
    assert row["search"]["first_wall_s"] == pytest.approx(first[1]["search"]["wall_s"])
    assert row["search"]["calls"] == first[1]["search"]["calls"] and row["test"] == {
        **first[1]["test"], "wall_s": row["test"]["wall_s"], "run_id": row["test"]["run_id"],
        "cache_hits": row["test"]["cache_hits"], "model_calls": row["test"]["model_calls"]
    }  # fmt: skip
    assert f"(first {first[1]['search']['wall_s']:.0f})" in again.stdout


@pytest.mark.slow
def test_a_named_test_cache_answers_the_baselines_stored_there(tmp_path: Path) -> None:
    cache = f"sqlite:///{tmp_path / 'baselines.db'}"
    only_baseline = ["--policies", "", "--test-cache", cache]
    first = run(tmp_path, *only_baseline)
    assert first.returncode == 0, first.stderr[-3000:]
    assert (tmp_path / "baselines.db").is_file() and not list((tmp_path / "out").rglob("test-cache.db"))
    again = run(tmp_path, *only_baseline, "--out-dir", str(tmp_path / "other"))
    assert again.returncode == 0, again.stderr[-3000:]
    (test,) = [
        json.loads(line)["test"]
        for line in (tmp_path / "other" / "fake-tiny-add.jsonl").read_text().splitlines()
    ]
    assert test["model_calls"] == 0 and test["cache_hits"] == test["requests"] == 12


@pytest.mark.slow
def test_match_calls_caps_the_searches_at_the_reference_minus_the_selection(tmp_path: Path) -> None:
    out = tmp_path / "out"
    early = run(tmp_path, "--policies", "ape", "--match-calls", "random")
    assert (
        early.returncode == 0
        and "ape: not run: --match-calls random: it has no finished result yet" in early.stderr
    )
    first = run(tmp_path, "--resume")  # both at the plain cap (60)
    assert first.returncode == 0, first.stderr[-3000:]
    rows = [json.loads(line) for line in (out / "fake-tiny-add.jsonl").read_text().splitlines()]
    reference = next(r for r in rows if r["name"] == "random")
    cap = min(60, reference["search"]["calls_to_find"] - 3 * 8)  # light: the best 3 on all 8 dev items
    matched = run(tmp_path, "--resume", "--match-calls", "random")
    assert matched.returncode == 0, matched.stderr[-3000:]
    assert f"== ape: capped at {cap} calls: random's" in matched.stdout
    assert "== random: already in" in matched.stdout  # the reference is not capped by itself
    rows = [json.loads(line) for line in (out / "fake-tiny-add.jsonl").read_text().splitlines()]
    ape = rows[-1]
    assert ape["name"] == "ape" and len([r for r in rows if r["name"] == "ape"]) == 2
    search = ape["search"]
    assert search["cap"] == cap and search["matched_to"] == "random" and search["warm_cache"]
    assert search["calls"] <= cap and search["calls_to_find"] <= reference["search"]["calls_to_find"], (
        search,
        reference["search"],
    )
    assert search["cache_hits"] > 0  # the earlier ape search's answers, kept in its store
    again = run(tmp_path, "--resume", "--match-calls", "random")
    assert again.returncode == 0 and again.stdout.count("skipped (--resume)") == 3


@pytest.mark.parametrize(
    ("flags", "message"),
    [
        (["--dspy-share", "2"], "--dspy-share 2.0: must be above 0 and at most 1"),
        (["--dspy-threads", "0"], "--dspy-threads 0: must be at least 1"),
        (["--match-calls", "dspy-miprov"], "--match-calls 'dspy-miprov': not an entry"),
        (["--dtype", "int8"], "--dtype int8: only a local model has weights to choose; 'fake' is not one"),
        (["--dspy-max-calls", "0"], "--dspy-max-calls 0: must be at least 1"),
    ],
)
def test_bad_dspy_options_are_refused_up_front(tmp_path: Path, flags: list[str], message: str) -> None:
    bad = run(tmp_path, *flags)
    assert bad.returncode == 2 and message in bad.stderr and "Traceback" not in bad.stderr
    assert not (tmp_path / "out").exists()


def test_a_chosen_dtype_gets_results_and_stores_of_its_own() -> None:
    program = load_program()
    args = program.parse_args(["--model", "qwen2.5-coder-1.5b", "--dtype", "int8", "--out-dir", "out"])
    assert program.jsonl_path(args) == Path("out/qwen2.5-coder-1.5b-int8-gsm8k.jsonl")
    assert program.work_dir(args) == Path("out/qwen2.5-coder-1.5b-int8-gsm8k")
    assert program.settings(args)["dtype"] == "int8"
    auto = program.parse_args(["--model", "qwen2.5-coder-1.5b", "--out-dir", "out"])
    assert program.jsonl_path(auto) == Path("out/qwen2.5-coder-1.5b-gsm8k.jsonl")


def test_rows_from_before_the_dtype_setting_still_resume_and_other_weights_are_refused() -> None:
    program = load_program()
    args = program.parse_args(["--model", "qwen2.5-coder-1.5b", "--out-dir", "out"])
    older = {"name": "ape", "settings": {k: v for k, v in program.settings(args).items() if k != "dtype"}}
    assert program.same_settings(older, args)
    assert not program.same_settings({**older, "settings": {**older["settings"], "max_calls": 1}}, args)
    int8 = program.parse_args(["--model", "qwen2.5-coder-1.5b", "--dtype", "int8", "--out-dir", "out"])
    assert not program.same_settings(older, int8)
    rows = [{"name": "zero-shot CoT", "status": "ok", "model_id": "local/m:int8"}]
    assert program.other_model(rows, {"name": "ape", "status": "ok", "model_id": "local/m:int8"}) is None
    why = program.other_model(rows, {"name": "ape", "status": "ok", "model_id": "local/m:bfloat16"})
    assert why is not None and "local/m:bfloat16" in why and "local/m:int8" in why and "--dtype" in why
    assert program.other_model(rows, {"name": "ape", "status": "failed"}) is None


def test_dspy_searches_can_have_a_cap_of_their_own() -> None:
    program = load_program()
    args = program.parse_args([*TINY, "--dspy-max-calls", "100"])
    assert [program.search_cap(args, name) for name in ("ape", "dspy-mipro", "dspy-mipro-matched")] == [
        60,
        100,
        100,
    ]
    worker = program.parse_args([*TINY, "--dspy-max-calls", "100", "--worker", "dspy-mipro"])
    assert program.search_cap(worker) == 100
    assert program.search_cap(program.parse_args(TINY), "dspy-mipro") == 60
    assert "dspy-max-calls" not in program.settings(args)  # each row records its own cap


def test_a_bad_test_cache_url_is_refused_before_any_entry_runs(tmp_path: Path) -> None:
    bad = run(tmp_path, "--policies", "", "--test-cache", "nosuchscheme://x")
    assert bad.returncode == 2 and "--test-cache" in bad.stderr and "nosuchscheme" in bad.stderr
    assert "Traceback" not in bad.stderr and not (tmp_path / "out" / "fake-tiny-add.jsonl").exists()


def row(name: str, kind: str, scores: list[float], calls: int) -> dict[str, Any]:
    return {
        "name": name, "kind": kind, "status": "ok",
        "test": {"accuracy": sum(scores) / len(scores), "scores": {f"t{i}": s for i, s in enumerate(scores)}},
        "search": {"calls_to_find": calls},
    }  # fmt: skip


def test_verdict_needs_higher_test_accuracy_significantly_and_no_more_calls() -> None:
    program = load_program()
    dspy = row("dspy-mipro", "dspy", [1.0] * 20 + [0.0] * 20, calls=500)
    better = [1.0] * 20 + [1.0] * 15 + [0.0] * 5  # 15 more right, none lost: McNemar p < 0.001
    slightly = [1.0] * 20 + [1.0] * 2 + [0.0] * 18  # 2 more right: not significant

    comparisons, lines = program.verdicts([dspy, row("tpe", "promptopt", better, calls=480)], seed=0)
    assert len(lines) == 1 and "YES" in lines[0] and "tpe" in lines[0], lines
    assert comparisons[0]["significant"] and comparisons[0]["paired"]["diff"] == pytest.approx(15 / 40)

    _, lines = program.verdicts([dspy, row("tpe", "promptopt", better, calls=501)], seed=0)
    assert "NO — every promptopt policy spent more calls" in lines[0] and "tpe (501)" in lines[0]

    _, lines = program.verdicts([dspy, row("ape", "promptopt", slightly, calls=400)], seed=0)
    assert "NOT SHOWN" in lines[0] and "not significant" in lines[0]

    _, lines = program.verdicts([dspy, row("ape", "promptopt", [0.0] * 40, calls=400)], seed=0)
    assert lines[0].startswith("VERDICT vs dspy-mipro") and "NO — best is ape" in lines[0]

    skipped = {"name": "dspy-mipro", "kind": "dspy", "status": "skipped", "reason": "no dspy Python at /x"}
    _, lines = program.verdicts([skipped, row("ape", "promptopt", better, calls=1)], seed=0)
    assert lines == ["VERDICT: no DSPy result to compare with (dspy-mipro: no dspy Python at /x)."]
