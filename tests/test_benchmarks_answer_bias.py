"""The answer-bias benchmark: a strategy a task cannot use is a row, and the summary's
goals are computed from the rows (hand-made here; the figures are in the docs)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from benchmarks import answer_bias


def _two_label_task(data_dir: Path) -> None:
    """``bbh:formal_fallacies`` in ``data_dir``: 60 items, two labels."""
    (data_dir / "bbh").mkdir()
    rows = [{"input": f"Is argument {i} valid?", "target": ["valid", "invalid"][i % 2]} for i in range(60)]
    (data_dir / "bbh" / "formal_fallacies.json").write_text(json.dumps({"examples": rows}), encoding="utf-8")


def _rows_of(tmp_path: Path, *options: str) -> list[dict]:
    """Run the benchmark on the fake model over ``bbh:formal_fallacies`` (4 test items)
    with ``options``; the JSON lines it wrote."""
    _two_label_task(tmp_path)
    out = tmp_path / "rows.jsonl"
    args = ["--data-dir", str(tmp_path), "--models", "fake", "--tasks", "bbh:formal_fallacies", "--limit", "4",
            *options, "--out", str(out), "--db", f"sqlite:///{tmp_path / 'b.db'}"]  # fmt: skip
    assert answer_bias.main(args) == 0
    return [json.loads(line) for line in out.read_text().splitlines()]


def test_position_on_a_two_label_task_is_a_not_offered_row(tmp_path: Path) -> None:
    _two_label_task(tmp_path)
    out = tmp_path / "rows.jsonl"
    args = ["--data-dir", str(tmp_path), "--models", "fake", "--tasks", "bbh:formal_fallacies", "--limit", "4",
            "--strategies", "plain,position", "--out", str(out), "--db", f"sqlite:///{tmp_path / 'b.db'}"]  # fmt: skip
    assert answer_bias.main(args) == 0
    plain, position = [json.loads(line) for line in out.read_text().splitlines()]
    assert plain["strategy"] == "plain" and plain["n"] == 4 and "status" not in plain
    assert position == {"task": "bbh:formal_fallacies", "model": "fake", "strategy": "position",
                        "status": "not offered", "reason": "task bbh:formal_fallacies is not multiple choice"}  # fmt: skip
    assert answer_bias.main(args) == 0  # resumed: nothing new
    assert len(out.read_text().splitlines()) == 2


def _row(task: str, strategy: str, accuracy: float, share: float, gold: float, constant: float) -> dict:
    return {"task": task, "model": "m", "strategy": strategy, "accuracy": accuracy, "most_common_share": share,
            "gold_most_common_share": gold, "share_gap_points": round(100 * abs(share - gold), 1),
            "constant": {"answer": "(A)", "accuracy": constant}}  # fmt: skip


def test_summary_goals_from_hand_made_rows() -> None:
    rows = [
        _row("bbh:a", "plain", 0.20, 1.00, 0.50, 0.50),
        _row("bbh:a", "permute3", 0.40, 0.55, 0.50, 0.50),  # within 10; below constant, batch is above
        _row("bbh:a", "batch", 0.60, 0.70, 0.50, 0.50),
        _row("bbh:b", "plain", 0.30, 0.90, 0.40, 0.40),
        _row("bbh:b", "permute3", 0.50, 0.45, 0.40, 0.40),
        _row("bbh:b", "batch", 0.30, 0.40, 0.40, 0.40),  # below constant, permute3 is above
        {"task": "bbh:b", "model": "m", "strategy": "position", "status": "not offered", "reason": "why"},
    ]
    text = answer_bias.summary(rows)
    assert "| bbh:a | 50 / 50 | 20 (100) | 40 (55) | 60 (70) |  |" in text
    assert "| bbh:b | 40 / 40 | 30 (90) | 50 (45) | 30 (40) | n/a |" in text
    assert "| permute3 | 2 | 2 of 2 | +20.0 | 1: a |" in text
    assert "| batch | 2 | 1 of 2 | +20.0 | 1: b |" in text
    assert "| position |" not in text.split("| strategy |")[1]  # no task ran it


def test_a_search_strategy_is_a_row_with_its_winner_and_says_how_far_it_is(tmp_path: Path, capsys) -> None:
    (row,) = _rows_of(tmp_path, "--strategies", "search-default", "--search-calls", "40")
    assert row["strategy"] == "search-default" and row["n"] == 4 and row["winner"]
    assert 0 < row["search_calls"] <= 40
    err = capsys.readouterr().err
    assert "search-default ..." in err and "calls of 40" in err


def test_the_summary_pools_a_paired_test_against_plain_over_the_items_both_scored(tmp_path: Path) -> None:
    plain = {**_row("bbh:a", "plain", 0.25, 1.0, 0.5, 0.5), "item_scores": {"1": 0, "2": 0, "3": 1, "4": 0}}
    batch = {**_row("bbh:a", "batch", 0.75, 0.5, 0.5, 0.5), "item_scores": {"1": 1, "2": 1, "3": 1, "4": 0}}
    plain_b = {**_row("bbh:b", "plain", 0.5, 1.0, 0.5, 0.5), "item_scores": {"1": 1, "2": 0}}
    batch_b = {
        **_row("bbh:b", "batch", 0.5, 0.5, 0.5, 0.5),
        "item_scores": {"1": 1, "2": 1, "3": 0},
    }  # 3: not in plain
    text = answer_bias.summary([plain, batch, plain_b, batch_b])
    # 6 pairs, 3 gained and none lost: +50.0 points, McNemar's exact p = 2 x (1/2)^3 = 0.25
    assert "| batch | 2 | 2 of 2 | +25.0 | 0 | +50.0 p=0.25 (n 6) |" in text
    # rows without per-item scores (written before they were kept) say so
    assert "| batch | 1 | 1 of 1 | +50.0 | 0 | – |" in answer_bias.summary(
        [_row("bbh:a", "plain", 0.25, 1.0, 0.5, 0.5), _row("bbh:a", "batch", 0.75, 0.5, 0.5, 0.5)]
    )
    # and a real run's rows carry them
    (row,) = _rows_of(tmp_path, "--strategies", "batch")
    assert len(row["item_scores"]) == row["n"] == 4


def test_raw_label_scores_are_no_corrected_candidate_for_the_constant_goal() -> None:
    rows = [
        _row("bbh:a", "plain", 0.20, 1.00, 0.50, 0.50),
        _row("bbh:a", "raw", 0.60, 0.60, 0.50, 0.50),  # above the constant, but it corrects nothing
        _row("bbh:a", "batch", 0.40, 0.50, 0.50, 0.50),
    ]
    text = answer_bias.summary(rows)
    assert "| bbh:a | 50 / 50 | 20 (100) | 60 (60) | 40 (50) |" in text
    assert "| batch | 1 | 1 of 1 | +20.0 | 0 |" in text
    # nor are a default-space search winner, a dev pick of plain, nor a winner that neither
    # permutes nor calibrates
    rows.append({**_row("bbh:a", "search-default", 0.70, 0.60, 0.50, 0.50), "winner": {"cot_mode": "none"}})
    rows.append({**_row("bbh:a", "dev-pick", 0.65, 1.00, 0.50, 0.50), "picked": "plain"})
    rows.append({**_row("bbh:a", "search-answer-bias", 0.66, 0.60, 0.50, 0.50),
                 "winner": {"permute": 1, "calibration": "none"}})  # fmt: skip
    assert "| batch | 1 | 1 of 1 | +20.0 | 0 |" in answer_bias.summary(rows)
    rows.append(_row("bbh:a", "contextual", 0.55, 0.60, 0.50, 0.50))
    assert "| batch | 1 | 1 of 1 | +20.0 | 1: a |" in answer_bias.summary(rows)
    rows[-1] = {**_row("bbh:a", "search-answer-bias", 0.55, 0.60, 0.50, 0.50), "winner": {"permute": 3}}
    assert "| batch | 1 | 1 of 1 | +20.0 | 1: a |" in answer_bias.summary(rows)


def test_dev_pick_scores_each_usable_strategy_on_dev_and_the_best_on_test(tmp_path: Path, capsys) -> None:
    options = ["--strategies", "dev-pick", "--pick-from", "plain,batch,position", "--dev-limit", "6"]
    (row,) = _rows_of(tmp_path, *options)
    assert set(row["dev_accuracy"]) == {"plain", "batch"}  # position is not offered on a two-label task
    best = max(row["dev_accuracy"].values())
    assert row["picked"] == next(s for s, a in row["dev_accuracy"].items() if a == best)  # ties: the earlier
    assert row["dev_n"] == 6 and row["n"] == 4 and row["calls"] > 0
    assert "dev-pick: plain on 6 dev items" in capsys.readouterr().err
    assert "| dev-pick |" in answer_bias.summary([row, {**row, "strategy": "plain"}])


def test_dev_pick_balanced_picks_by_each_gold_labels_accuracy_on_dev(tmp_path: Path, capsys) -> None:
    options = ["--strategies", "dev-pick-balanced", "--pick-from", "plain,batch", "--dev-limit", "6"]
    (row,) = _rows_of(tmp_path, *options)
    balanced = row["dev_balanced_accuracy"]
    assert set(balanced) == set(row["dev_accuracy"]) == {"plain", "batch"}
    assert row["picked"] == next(s for s, a in balanced.items() if a == max(balanced.values()))
    assert "dev-pick-balanced: plain on 6 dev items" in capsys.readouterr().err
    assert "| dev-pick-balanced |" in answer_bias.summary([row, {**row, "strategy": "plain"}])


def test_dev_pick_refuses_an_unknown_strategy_to_pick_from(tmp_path: Path) -> None:
    import pytest

    with pytest.raises(SystemExit):
        answer_bias.main(
            ["--strategies", "dev-pick", "--pick-from", "plain,bogus", "--out", str(tmp_path / "o")]
        )


def test_dev_pick_with_nothing_the_task_can_use_is_a_not_offered_row(tmp_path: Path) -> None:
    (row,) = _rows_of(tmp_path, "--strategies", "dev-pick", "--pick-from", "position")
    assert row["status"] == "not offered" and "none of --pick-from position" in row["reason"]


def test_a_row_replayed_from_the_cache_says_where_its_answers_came_from(tmp_path: Path, capsys) -> None:
    _two_label_task(tmp_path)
    common = ["--data-dir", str(tmp_path), "--models", "fake", "--tasks", "bbh:formal_fallacies", "--limit", "4",
              "--strategies", "plain", "--db", f"sqlite:///{tmp_path / 'b.db'}"]  # fmt: skip
    assert answer_bias.main([*common, "--out", str(tmp_path / "first.jsonl")]) == 0
    assert "calls 4\n" in capsys.readouterr().out
    assert answer_bias.main([*common, "--out", str(tmp_path / "again.jsonl")]) == 0  # same cache, new rows
    assert "calls 0 (+4 from the cache)" in capsys.readouterr().out


def test_permute_on_a_task_without_options_is_a_not_offered_row(tmp_path: Path) -> None:
    plain, permute = _rows_of(tmp_path, "--strategies", "plain,permute3")
    assert "status" not in plain
    assert permute == {"task": "bbh:formal_fallacies", "model": "fake", "strategy": "permute3",
                       "status": "not offered", "reason": "no item of task bbh:formal_fallacies lists its options"}  # fmt: skip


def test_a_calibration_with_permute_on_a_task_without_options_is_the_calibrations_row(tmp_path: Path) -> None:
    """The executor scores items without options once, as they are: permute3-batch runs
    there and answers as batch does (its row is not a missing one)."""
    batch, permuted = _rows_of(tmp_path, "--strategies", "batch,permute3-batch")
    assert "status" not in permuted
    assert permuted["accuracy"] == batch["accuracy"] and permuted["answers"] == batch["answers"]


def test_skip_scores_a_fresh_slice_of_test_after_the_first_items(tmp_path: Path) -> None:
    (first,) = _rows_of(tmp_path, "--strategies", "plain")
    out = tmp_path / "fresh.jsonl"
    (tmp_path / "rows.jsonl").rename(out)  # the same file: a row of another slice is not this one's
    args = ["--data-dir", str(tmp_path), "--models", "fake", "--tasks", "bbh:formal_fallacies", "--limit", "4",
            "--skip", "4", "--strategies", "plain", "--out", str(out), "--db", f"sqlite:///{tmp_path / 'b.db'}"]  # fmt: skip
    assert answer_bias.main(args) == 0
    _, fresh = [json.loads(line) for line in out.read_text().splitlines()]
    assert first["skip"] == 0 and fresh["skip"] == 4 and fresh["n"] == 4
    assert not set(fresh["item_scores"]) & set(first["item_scores"])  # other items of the same split
    too_far = [*args[:8], "--skip", "1000", *args[10:-4], "--out", str(tmp_path / "none.jsonl"), *args[-2:]]
    with pytest.raises(SystemExit, match="has only"):
        answer_bias.main(too_far)


def test_the_summary_reads_several_files_and_keeps_two_slices_of_a_task_apart(tmp_path: Path, capsys) -> None:
    first = [_row("bbh:a", "plain", 0.20, 1.00, 0.50, 0.50), _row("bbh:a", "batch", 0.40, 0.90, 0.50, 0.50)]
    redone = [_row("bbh:a", "batch", 0.60, 0.55, 0.50, 0.50)]  # a later file's row replaces the earlier
    fresh = [{**_row("bbh:a", s, a, 0.5, 0.5, 0.5), "skip": 50} for s, a in (("plain", 0.3), ("batch", 0.5))]
    files = []
    for name, rows in (("first", first), ("redone", redone), ("fresh", fresh)):
        files.append(tmp_path / f"{name}.jsonl")
        files[-1].write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    assert answer_bias.main(["--summary", "--out", ",".join(str(f) for f in files)]) == 0
    text = capsys.readouterr().out
    assert "| bbh:a | 50 / 50 | 20 (100) | 60 (55) |" in text
    assert "| bbh:a @50 | 50 / 50 | 30 (50) | 50 (50) |" in text
    assert "| batch | 2 | 2 of 2 | +30.0 | 0 |" in text  # two slices: (+40 + +20) / 2


def test_a_task_line_with_only_not_offered_rows_is_left_out() -> None:
    rows = [{**_row("bbh:a", "plain", 0.3, 0.5, 0.5, 0.5), "skip": 50},
            {"task": "bbh:a", "model": "m", "strategy": "position", "status": "not offered", "reason": "why"}]  # fmt: skip
    text = answer_bias.summary(rows)
    assert "| bbh:a @50 |" in text and "| bbh:a |" not in text
