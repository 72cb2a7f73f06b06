"""The scripts in examples/ run, on the fake backend, as a user would run them."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
EXAMPLES = REPO / "examples"


def run(tmp_path: Path, *args: str) -> str:
    env = {**os.environ, "PYTHONPATH": f"{REPO}{os.pathsep}{os.environ.get('PYTHONPATH', '')}"}
    done = subprocess.run(
        [sys.executable, *args], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300
    )
    assert done.returncode == 0, done.stderr
    return done.stdout


def test_classification_with_a_label_set_reports_per_label(tmp_path: Path) -> None:
    out = run(tmp_path, str(EXAMPLES / "classify_sentiment.py"), "--model", "fake", "--db", "x.db")
    assert "test score:" in out and "report: classify_report.html" in out
    labels = [line.split()[0] for line in out.splitlines() if line.startswith("  ")]
    assert sorted(labels) == ["negative", "neutral", "positive"]
    page = (tmp_path / "classify_report.html").read_text()
    assert "Per label" in page and "Worst items of the winner" in page and "is not one of the labels" in page


def test_json_extraction_scored_by_json_fields(tmp_path: Path) -> None:
    out = run(tmp_path, str(EXAMPLES / "extract_json.py"), "--model", "fake", "--db", "x.db")
    assert "test score (mean of per-field matches)" in out and "extracted:" in out
    from promptopt.store import Store

    with Store(str(tmp_path / "x.db")) as store:
        run_id = store.list_runs(limit=1)[0].id
        feedback = {r.feedback for r in store.get_evaluations(run_id)}
    assert "no JSON object found in the output" in feedback  # the fake model writes no JSON: said so


def test_rewrite_judged_by_an_llm(tmp_path: Path) -> None:
    out = run(
        tmp_path, str(EXAMPLES / "judge_rewrite.py"), "--model", "fake", "--judge", "fake", "--db", "x.db"
    )
    assert "judged test score" in out
    from promptopt.report import render_report
    from promptopt.store import Store

    with Store(str(tmp_path / "x.db")) as store:
        record = store.list_runs(limit=1)[0]
        page = render_report(store, record.id)
    summary = record.summary or {}
    assert summary["metric"] == "llm_judge" and summary["judge"]["calls"] > 0
    assert "judge calls" in page and "llm_judge" in page


def test_a_pipeline_with_its_own_metric_in_under_20_lines(tmp_path: Path) -> None:
    source = (EXAMPLES / "pipeline.py").read_text()
    assert len([line for line in source.splitlines() if line.strip()]) < 20  # non-blank lines
    out = run(tmp_path, str(EXAMPLES / "pipeline.py"), "fake")
    instruction, score, answer = out.strip().rsplit(" ", 2)
    assert 0.0 <= float(score) <= 1.0 and answer.isdigit()
