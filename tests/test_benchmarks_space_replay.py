"""benchmarks/space_replay.py (issue #5): recording a finite grid with the fake model, and
replaying the real controller over it from the response cache alone."""

from __future__ import annotations

import importlib
import json
import random
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest
import yaml

from promptopt.errors import BackendError, ConfigError
from promptopt.spaces import load_space
from promptopt.store import Store
from promptopt.tasks import get_task
from promptopt.types import Candidate, GenerationRequest, Message

pytest.importorskip("optuna")

TASK = "gsm-symbolic"  # generated offline: no data directory needed
ANSWER = 'End your answer with "The answer is N." where N is the final number.'  # the task's own
# 2 instructions × 2 CoT modes × (0 demos, or 1 fixed demo in 2 orders) × 2 answer formats = 24
# points; with a single demo both orders are the same prompt, so 16 unique candidates.
SPACE: dict[str, Any] = {
    "name": "tiny-replay",
    "dimensions": {
        "instruction": {"type": "pool", "seeds": ["Work carefully and check the result."], "grow": {"max": 0}},
        "cot_mode": {"type": "categorical", "choices": ["none", "zero_shot"]},
        "cot_trigger": {"type": "categorical", "choices": ["Let's think step by step."],
                        "when": {"cot_mode": ["zero_shot"]}},
        "n_demos": {"type": "integer", "low": 0, "high": 1},
        "demo_selection": {"type": "categorical", "choices": ["fixed"], "when": {"n_demos": {"min": 1}}},
        "demo_order": {"type": "categorical", "choices": ["as_selected", "reversed"],
                       "when": {"n_demos": {"min": 1}}},
        "answer_format": {"type": "categorical", "choices": [ANSWER, "Reply with a number."]},
        "max_tokens": {"type": "categorical", "choices": [64]},
    },
}  # fmt: skip
DEV = 6
REPLAY = ["--seeds", "2", "--max-calls", "60", "--n-proposals", "3", "--rounds", "6", "--race-start", "2"]


@pytest.fixture(scope="module")
def program() -> ModuleType:
    return importlib.import_module("benchmarks.space_replay")  # as tests/test_reliability.py does


@pytest.fixture(scope="module")
def task() -> Any:
    return get_task(TASK)


@pytest.fixture(scope="module")
def recorded(tmp_path_factory: pytest.TempPathFactory, program: ModuleType) -> dict[str, Any]:
    """The tiny grid recorded once with the fake model: the table, its path and database."""
    tmp = tmp_path_factory.mktemp("record")
    space_file = tmp / "tiny-replay.yaml"
    space_file.write_text(yaml.safe_dump(SPACE, sort_keys=False))
    db = tmp / "recorded.db"
    out = tmp / "table.json"
    common = ["--model", "fake", "--task", TASK, "--space", str(space_file), "--dev-size", str(DEV),
              "--db", str(db), "--out-dir", str(tmp), "--batch-size", "8"]  # fmt: skip
    assert program.main(["record", *common, "--out", str(out)]) == 0
    first = json.loads(out.read_text())
    again = tmp / "again.json"
    assert program.main(["record", *common, "--out", str(again)]) == 0
    return {"table": first, "again": json.loads(again.read_text()), "path": out, "db": db, "tmp": tmp,
            "space_file": space_file}  # fmt: skip


def replay(program: ModuleType, recorded: dict[str, Any], out: Path, *extra: str) -> dict[str, Any]:
    args = program.parser().parse_args(
        ["replay", "--table", str(recorded["path"]), "--out-dir", str(out), *REPLAY, *extra]
    )
    result: dict[str, Any] = program.replay(args)
    return result


def test_record_writes_the_whole_grid_deduplicated_and_resumes_from_the_cache(
    recorded: dict[str, Any], task: Any
) -> None:
    table = recorded["table"]
    assert table["grid_size"] == 24
    rows = table["candidates"]
    assert len(rows) == 16 and len({r["hash"] for r in rows}) == 16
    assert sum(len(r["points"]) for r in rows) == 24  # every grid point belongs to one row
    single_demo = [r for r in rows if r["candidate"]["demo_ids"]]
    assert single_demo and all(len(r["points"]) == 2 for r in single_demo)  # both orders, one prompt
    assert {p["demo_order"] for p in single_demo[0]["points"]} == {"as_selected", "reversed"}
    # the dev examples the controller races on, and a 0/1 score for each
    assert table["dev_ids"] == [e.id for e in task.examples("dev")[:DEV]]
    for row in rows:
        assert len(row["scores"]) == DEV and set(row["scores"]) <= {0.0, 1.0}
        assert row["mean"] == pytest.approx(sum(row["scores"]) / DEV)
        assert row["tokens_per_example"] > 0
    # the base and the instruction-only candidates are rows (here they are grid points too)
    base = Candidate.from_dict(table["base"])
    assert base.hash == table["base_hash"] and base.max_tokens == 64
    assert any("instruction-only" in r["sources"] for r in rows)
    assert table["model"] == "fake" and table["model_calls"] == 16 * DEV and table["failed_evaluations"] == 0
    # the fake prefers reasoning, demos and "The answer is": the table is not flat
    assert max(r["mean"] for r in rows) > min(r["mean"] for r in rows)
    # recording again makes no model call: everything comes from the cache in --db
    again = recorded["again"]
    assert again["model_calls"] == 0 and again["cache_hits"] == 16 * DEV
    assert [r["scores"] for r in again["candidates"]] == [r["scores"] for r in rows]


def test_the_grid_holds_every_point_the_search_samples(program: ModuleType, task: Any) -> None:
    space = load_space(SPACE)
    base = Candidate(instruction=task.spec.instruction, answer_format=ANSWER, max_tokens=64)
    policy = program.grid_policy(space, task, base)
    grid = {json.dumps(p, sort_keys=True) for p in program.grid_points(space, policy.dimension_options)}
    assert len(grid) == program.grid_size(space, policy.dimension_options) == 24
    rng = random.Random(0)
    for _ in range(300):
        point = space.sample(lambda d: rng.choice(policy.dimension_options(d)))
        assert json.dumps(point, sort_keys=True) in grid


def test_replay_answers_everything_from_the_table_and_is_reproducible(
    program: ModuleType, recorded: dict[str, Any], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import promptopt.testing.space_fakes

    def no_model(*_: object) -> None:
        raise AssertionError("the replay built the fake model")

    monkeypatch.setattr(promptopt.testing.space_fakes, "space_backend", no_model)
    first = replay(program, recorded, tmp_path / "a")
    assert first["replay_misses"] == 0 and first["table_hits"] > 0
    table_mean = {r["hash"]: r["mean"] for r in recorded["table"]["candidates"]}
    runs = first["runs"]
    assert {r["policy"] for r in runs} == {"random", "tpe", "reinforce", "ape"} and len(runs) == 8
    for run in runs:
        assert run["test_n"] == 0  # the held-out test is not in the table: skipped
        # every request answered from the table, or from the controller's copy of a table answer
        assert (
            run["replay_misses"] == 0 and run["table_hits"] + run["replay_db_hits"] == run["total_calls"] > 0
        )
        assert tuple(run["curve"][-1]) == (run["total_calls"], table_mean[run["winner"]])
        assert run["search_calls"] <= 60 + 1
        assert all(score is None or score in table_mean.values() for _, score in run["curve"])
    ape = [r for r in runs if r["policy"] == "ape"]
    # instruction only: every candidate it races is the base with another instruction
    base = Candidate.from_dict(recorded["table"]["base"])
    rows = {r["hash"]: r for r in recorded["table"]["candidates"]}
    for run in ape:
        winner = Candidate.from_dict(rows[run["winner"]]["candidate"])
        assert winner.cot_mode == base.cot_mode and winner.demo_ids == base.demo_ids
        assert winner.answer_format == base.answer_format
    summary = first["summary"]
    assert [r["policy"] for r in summary["rows"]] == ["random", "tpe", "reinforce", "ape"]
    assert summary["target"] == pytest.approx(
        sum(r["winner_table_score"] for r in runs if r["policy"] == "random") / 2
    )
    assert Path(first["json"]).is_file()
    # the same seeds give the same curves and winners
    second = replay(program, recorded, tmp_path / "b")
    assert [(r["policy"], r["seed"], r["curve"], r["winner"]) for r in second["runs"]] == [
        (r["policy"], r["seed"], r["curve"], r["winner"]) for r in runs
    ]


def test_a_request_outside_the_table_is_a_clear_error(
    program: ModuleType, recorded: dict[str, Any], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    with Store(f"sqlite:///{recorded['db']}") as store:
        backend = program.replay_backend(store, "fake")
        with pytest.raises(BackendError, match="not in the recorded table"):
            backend.generate([GenerationRequest(messages=(Message("user", "What is 2 + 2?"),))])
        assert backend.inner.calls == 1 and backend.hits == 0
    # a table whose space offers a prompt that was never recorded: the search stops with the error
    table = json.loads(recorded["path"].read_text())
    table["space"]["dimensions"]["answer_format"]["choices"] = ["Answer with digits only."]
    changed = tmp_path / "changed.json"
    changed.write_text(json.dumps(table))
    code = program.main(["replay", "--table", str(changed), "--out-dir", str(tmp_path), "--policies", "random",
                         *REPLAY])  # fmt: skip
    assert code == 2
    assert "not in the recorded table" in capsys.readouterr().err


def test_infinite_or_too_large_grids_are_refused(
    program: ModuleType, recorded: dict[str, Any], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    base = ["record", "--model", "fake", "--task", TASK, "--dev-size", str(DEV), "--db", str(tmp_path / "x.db"),
            "--out-dir", str(tmp_path)]  # fmt: skip
    continuous = {
        **SPACE,
        "dimensions": {**SPACE["dimensions"], "temperature": {"type": "float", "low": 0.2, "high": 1.0}},
    }
    path = tmp_path / "continuous.yaml"
    path.write_text(yaml.safe_dump(continuous, sort_keys=False))
    assert program.main([*base, "--space", str(path)]) == 2
    err = capsys.readouterr().err
    assert "'temperature'" in err and "infinite" in err
    # the built-in gsm8k space grows its pool through a proposer: not a table
    assert program.main([*base, "--space", "gsm8k"]) == 2
    err = capsys.readouterr().err
    assert "'instruction'" in err and "grow" in err
    assert program.main([*base, "--space", str(recorded["space_file"]), "--max-grid", "20"]) == 2
    err = capsys.readouterr().err
    assert "24 points" in err and "--max-grid 20" in err and "'instruction' 2" not in err
    assert "answer_format 2" in err and "n_demos 2" in err
    assert not list(tmp_path.glob("space_replay-table-*.json"))  # nothing recorded
    space = load_space(continuous)
    with pytest.raises(ConfigError, match="temperature"):
        program.check_grid(space, lambda d: d.options(), 1000)
