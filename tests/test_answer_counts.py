"""Outputs with no answer and outputs cut off at the token limit are counted on their own
wherever a score is shown (issue #27, point 2)."""

from __future__ import annotations

import json
from pathlib import Path

from click.testing import CliRunner

from promptopt.cli import cli
from promptopt.store import Store

SNARK = (
    "Which statement is sarcastic?\nOptions:\n(A) He is generous, number {i}\n(B) He is terrible, number {i}"
)


def _snarks(tmp_path: Path, n: int = 60) -> Path:
    (tmp_path / "bbh").mkdir()
    rows = [{"input": SNARK.format(i=i), "target": ["(A)", "(B)"][i % 3 == 0]} for i in range(n)]
    (tmp_path / "bbh" / "snarks.json").write_text(json.dumps({"examples": rows}), encoding="utf-8")
    return tmp_path


def run(*args: str) -> tuple[int, str, str]:
    result = CliRunner().invoke(cli, list(args))
    return result.exit_code, result.stdout, result.stderr


def test_eval_counts_outputs_with_no_answer(tmp_path: Path, db_url: str) -> None:
    # the fake model answers "The answer is N." with a digit: no choice letter anywhere
    folder = _snarks(tmp_path)
    code, out, err = run("eval", "--task", "bbh:snarks", "--data-dir", str(folder), "--model", "fake",
                         "--limit", "10", "--db", db_url, "--json")  # fmt: skip
    assert code == 0, err
    summary = json.loads(out)
    assert summary["n_failed"] == 0 and summary["n_no_answer"] == 10 and summary["n_truncated"] == 0
    code, out, _ = run("eval", "--task", "bbh:snarks", "--data-dir", str(folder), "--model", "fake",
                       "--limit", "10", "--db", db_url)  # fmt: skip
    assert "10 no answer found, 0 cut off at the token limit" in out
    assert "warning" in out and "100% of outputs hold no answer found" in out


def test_truncated_outputs_are_counted_stored_and_shown(tmp_path: Path, db_url: str) -> None:
    folder = _snarks(tmp_path)
    # three words of "Let me see. The answer is N.": cut off at the token limit
    code, out, err = run("eval", "--task", "bbh:snarks", "--data-dir", str(folder), "--model", "fake",
                         "--limit", "8", "--max-new-tokens", "3", "--db", db_url, "--json")  # fmt: skip
    assert code == 0, err
    summary = json.loads(out)
    assert summary["n_truncated"] == 8 and summary["n_no_answer"] == 8
    with Store(db_url) as store:
        results = store.get_evaluations(summary["run_id"])
        assert all(r.truncated and r.samples[0].finish_reason == "length" for r in results)
    code, out, _ = run("leaderboard", "--db", db_url)
    assert code == 0 and "no ans/cut" in out and "8/8!" in out
    code, out, _ = run("show", summary["run_id"], "--db", db_url, "--data-dir", str(folder))
    assert code == 0 and "8 no answer found, 8 cut off at the token limit" in out
    assert "(cut off at the token limit)" in out
    code, out, _ = run("leaderboard", "--db", db_url, "--json")
    assert json.loads(out)[0]["test"]["n_truncated"] == 8
    report = tmp_path / "r.html"
    code, out, _ = run(
        "report", summary["run_id"], "--db", db_url, "-o", str(report), "--data-dir", str(folder)
    )
    page = report.read_text(encoding="utf-8")
    assert code == 0 and "cut off at the token limit" in page and "Let me see." in page


def test_search_counts_and_flags_candidates(tmp_path: Path, db_url: str) -> None:
    folder = _snarks(tmp_path, 300)
    code, out, err = run("search", "--task", "bbh:snarks", "--data-dir", str(folder), "--model", "fake",
                         "--max-calls", "80", "--dev-size", "10", "--test-size", "10", "--proposals", "2",
                         "--rounds", "0", "--db", db_url, "--json", "--no-progress")  # fmt: skip
    assert code == 0, err
    summary = json.loads(out)
    rows = summary["leaderboard"]
    assert rows and all(r["no_answer"] == r["n"] and r["flagged"] for r in rows)
    assert summary["test"]["winner"]["no_answer"] == summary["test"]["n"]


def test_splits_fit_the_data_and_are_printed(tmp_path: Path, db_url: str) -> None:
    """Issue #27, point 6: a share of the items with floors, not a fixed 125-item test."""
    from promptopt.tasks import get_task

    folder = _snarks(tmp_path, 178)
    assert get_task("bbh:snarks", folder).split_sizes() == {"train": 53, "dev": 54, "test": 71}
    code, out, _ = run("eval", "--task", "bbh:snarks", "--data-dir", str(folder), "--model", "fake",
                       "--limit", "4", "--db", db_url)  # fmt: skip
    assert code == 0 and "splits      train 53 · dev 54 · test 71" in out
    code, out, err = run("search", "--task", "bbh:snarks", "--data-dir", str(folder), "--model", "fake",
                         "--dev-size", "12", "--test-size", "6", "--db", db_url, "--dry-run")  # fmt: skip
    assert code == 0, err
    assert "(this search uses dev 12, test 6)" in err
    assert "dev has only 12 items" in err and "±28% (95% CI)" in err
