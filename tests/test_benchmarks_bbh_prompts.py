"""The BBH prompts benchmark runs end to end on the fake model, resumes, and counts."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from benchmarks import bbh_prompts


def _data(tmp_path: Path) -> Path:
    (tmp_path / "bbh").mkdir()
    for name, targets in (("snarks", ["(A)", "(B)", "(B)"]), ("formal_fallacies", ["valid", "invalid"])):
        rows = [{"input": f"Item {i}?\nOptions:\n(A) one\n(B) two", "target": targets[i % len(targets)]}
                for i in range(60)]  # fmt: skip
        (tmp_path / "bbh" / f"{name}.json").write_text(json.dumps({"examples": rows}), encoding="utf-8")
    (tmp_path / "bbh" / "snarks.cot-prompt.txt").write_text(
        "Sarcasm.\n\nQ: Which?\nOptions:\n(A) x\n(B) y\nA: Let's think step by step.\nB mocks. So the answer is (B).\n",
        encoding="utf-8",
    )
    return tmp_path


def test_benchmark_runs_resumes_and_prints_the_table(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    folder = _data(tmp_path)
    out = tmp_path / "rows.jsonl"
    args = ["--data-dir", str(folder), "--model", "fake", "--limit", "5", "--out", str(out),
            "--db", f"sqlite:///{tmp_path / 'b.db'}"]  # fmt: skip
    assert bbh_prompts.main([*args, "--modes", "plain", "zero-shot CoT"]) == 0
    rows = [json.loads(line) for line in out.read_text().splitlines()]
    assert len(rows) == 4 and {r["mode"] for r in rows} == {"plain", "zero-shot CoT"}
    snarks = next(r for r in rows if r["task"] == "bbh:snarks")
    # the fake model answers "The answer is N.": no choice letter, every output counted
    assert snarks["no_answer"] == 1.0 and snarks["constant_answer"] == "(B)" and snarks["placeholder"] == 0.0
    # only 3-shot, the two +rescue modes and proposals are new
    assert bbh_prompts.main([*args, "--resume", "--proposals", "2"]) == 0
    rows = [json.loads(line) for line in out.read_text().splitlines()]
    assert len(rows) == 12
    rescued = next(r for r in rows if r["task"] == "bbh:snarks" and r["mode"] == "zero-shot CoT+rescue")
    assert rescued["calls"] == 5  # the first stage came from the cache: one follow-up per output
    asked = [r for r in rows if r["mode"] == "proposals"]
    assert len(asked) == 2 and all(r["proposals_asked"] == 2 for r in asked)
    printed = capsys.readouterr().out
    assert "zero-shot CoT at or above the constant baseline on 0 of 2 tasks" in printed
    assert "bbh:formal_fallacies" in printed and "placeh" in printed
    assert "instruction proposals usable" in printed


def test_placeholder_copies_are_recognised() -> None:
    assert bbh_prompts.PLACEHOLDER.search("Three sides.\nSo the answer is (X).")
    assert bbh_prompts.PLACEHOLDER.search("the answer is X.")
    assert not bbh_prompts.PLACEHOLDER.search("So the answer is (B).")
    assert not bbh_prompts.PLACEHOLDER.search("So the answer is Xavier.")
