"""The space policies (tpe, reinforce, random) on a fake whose space has a clearly best
region: seeded reproducibility, conditional dimensions, learning, and the Optuna study
living in promptopt's own database (SQLite and PostgreSQL: see tests/test_store.py for
PROMPTOPT_TEST_PG_URL and PROMPTOPT_REQUIRE_PG)."""

from __future__ import annotations

import hashlib
import json
import logging
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from statistics import mean
from typing import Any

import pytest
import sqlalchemy as sa

from promptopt.controller import SearchConfig, SearchResult, search
from promptopt.leaderboard import leaderboard
from promptopt.policies import PolicySettings, get_policy
from promptopt.proposers import Proposer
from promptopt.racing import successive_halving
from promptopt.spaces import SearchSpace, load_space
from promptopt.store import Store, head_revision
from promptopt.tasks import get_task
from promptopt.testing.space_fakes import ANSWER_IS, SPACE, prompt_skill, space_backend
from promptopt.types import Candidate
from tests.test_store import _fresh_pg_database

optuna = pytest.importorskip("optuna")


@pytest.fixture(scope="module")
def task():  # type: ignore[no-untyped-def]
    return get_task("gsm-symbolic")


@pytest.fixture(scope="module")
def space() -> SearchSpace:
    return load_space(SPACE)


def skill_of(candidate: Candidate) -> float:
    reasons = candidate.cot_mode != "none" and "step by step" in candidate.cot_trigger
    return prompt_skill(reasons=reasons, n_demos=len(candidate.demo_ids), answer_is=ANSWER_IS in candidate.answer_format,
                        instruction=candidate.instruction)  # fmt: skip


def flip(*parts: object) -> float:
    return int.from_bytes(hashlib.sha256("|".join(map(str, parts)).encode()).digest()[:4], "big") / 2**32


def drive(
    name: str, task: Any, space: SearchSpace, *, seed: int, rounds: int = 5, n: int = 6, dev: int = 32
) -> tuple[Any, list[str]]:
    """The controller's loop without the executor: racing on coin flips whose odds are the
    candidate's skill. Returns the policy and the candidates in the order it proposed them."""
    settings = PolicySettings(
        n_proposals=n, rounds=rounds, top_k=2, seed=seed, space=space, task=task, race_start=8
    )
    policy = get_policy(name)(
        Candidate(instruction="Answer."), Proposer(space_backend(task), task, seed=seed), settings
    )
    order: list[str] = []
    while proposals := policy.ask():
        candidates = {p.candidate.hash: p.candidate for p in proposals}
        order += list(candidates)

        def score(h: str, k: int, candidates: dict[str, Candidate] = candidates) -> list[float | None]:
            p = skill_of(candidates[h])
            return [1.0 if flip(h, i) < p else 0.0 for i in range(k)]

        policy.tell(
            successive_halving(list(candidates), score, dev, start=8, keep=2, prune=policy.should_prune)
        )
    return policy, order


@pytest.mark.parametrize("name", ["tpe", "reinforce", "random"])
def test_same_seed_same_sequence_of_candidates(name: str, task, space: SearchSpace) -> None:  # type: ignore[no-untyped-def]
    _, first = drive(name, task, space, seed=1, rounds=2)
    _, again = drive(name, task, space, seed=1, rounds=2)
    _, other = drive(name, task, space, seed=2, rounds=2)
    assert first == again and len(first) >= 10
    assert other != first


@pytest.mark.parametrize("name", ["tpe", "reinforce", "random"])
def test_conditional_dimensions_are_respected(name: str, task, space: SearchSpace) -> None:  # type: ignore[no-untyped-def]
    policy, _ = drive(name, task, space, seed=0, rounds=2)
    points = list(policy.points.values())
    assert len(points) >= 10
    for point in points:
        assert ("cot_trigger" in point) == (point["cot_mode"] == "zero_shot")
        assert ("demo_selection" in point) == (point["n_demos"] >= 1)
        assert ("temperature" in point) == (point["samples"] in (3, 5))
    for candidate_hash, point in policy.points.items():
        candidate = policy.candidates[candidate_hash]
        assert candidate.cot_trigger == ("" if point["cot_mode"] == "none" else point["cot_trigger"])
        assert candidate.temperature == (point.get("temperature", 0.0))
        assert len(candidate.demo_ids) == point["n_demos"]
    # the pool grew on demand, through the proposer
    assert len(policy.pool) > 3 and policy.pool[:3] == [
        "Answer.",
        "Solve it.",
        "Work carefully and check the result.",
    ]


def test_random_does_not_propose_a_prompt_raced_already(task) -> None:  # type: ignore[no-untyped-def]
    small = load_space({"name": "small", "dimensions": {
        "cot_mode": {"type": "categorical", "choices": ["none", "zero_shot"]},
        "answer_format": {"type": "categorical", "choices": [f'End with "{ANSWER_IS} N."', "Be brief.", "Say it."]},
    }})  # fmt: skip
    for seed in range(3):
        # 3 rounds of 2 proposals over a space of 6 prompts: all 6, each once
        policy, order = drive("random", task, small, seed=seed, rounds=2, n=2)
        base = Candidate(instruction="Answer.").hash
        proposed = [h for h in order if h != base]
        assert len(proposed) == 6 and len(set(proposed)) == 6, (seed, proposed)


def test_tpe_finds_the_good_region_better_than_random(task, space: SearchSpace) -> None:  # type: ignore[no-untyped-def]
    def best_true_skill(name: str, seed: int) -> float:
        policy, _ = drive(name, task, space, seed=seed, rounds=6)
        best = policy.best(1)[0]
        return skill_of(best)

    tpe = [best_true_skill("tpe", s) for s in range(4)]
    rnd = [best_true_skill("random", s) for s in range(4)]
    assert mean(tpe) > mean(rnd) + 0.03, (tpe, rnd)


def test_reinforce_shifts_towards_rewarded_choices(task, space: SearchSpace) -> None:  # type: ignore[no-untyped-def]
    policy, _ = drive("reinforce", task, space, seed=0, rounds=8)
    probs = {
        name: dict(zip(policy.choices[name], policy.probabilities(name), strict=True))
        for name in policy.choices
    }
    assert probs["cot_mode"]["zero_shot"] > 0.6
    assert probs["cot_trigger"]["Let's think step by step."] > 0.6
    assert probs["answer_format"][f'End with "{ANSWER_IS} N."'] > 0.45  # from 1/3
    preferred = policy.describe()["preferred"]
    assert preferred["cot_mode"] == "zero_shot"


def config(policy: str, **overrides: object) -> SearchConfig:
    values = {"task": "gsm-symbolic", "model": "fake", "base": Candidate(instruction="Answer."), "policy": policy,
              "space": SPACE, "dev_size": 24, "test_size": 40, "n_proposals": 5, "rounds": 2, "race_start": 8}  # fmt: skip
    values.update(overrides)
    return SearchConfig.from_preset("light", **values)


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def shared_db(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """promptopt's database, which the Optuna study shares: a SQLite file or a fresh
    PostgreSQL database (created, then dropped, as the store suite does)."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'shared.db'}"
    else:
        yield from _fresh_pg_database()


READ_STUDIES = """
import json, sys
import optuna
url = sys.argv[1]
out = {}
for name in optuna.study.get_all_study_names(url):
    study = optuna.load_study(study_name=name, storage=url)
    out[name] = {"user_attrs": study.user_attrs, "trials": [
        {"state": t.state.name, "value": t.value, "steps": sorted(t.intermediate_values),
         "candidate": t.user_attrs.get("candidate")} for t in study.get_trials()]}
print(json.dumps(out))
"""


def studies_seen_by_another_process(url: str) -> dict[str, Any]:
    """What optuna-dashboard would see: the studies read through Optuna's own storage in a
    fresh process, knowing nothing but the URL."""
    done = subprocess.run(
        [sys.executable, "-c", READ_STUDIES, url], capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)  # type: ignore[no-any-return]


def open_connections(url: str) -> int:
    """Other sessions connected to this PostgreSQL database."""
    engine = sa.create_engine(url, poolclass=sa.pool.NullPool)
    try:
        with engine.connect() as conn:
            return int(conn.exec_driver_sql(
                "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() AND pid <> pg_backend_pid()"
            ).scalar_one())  # fmt: skip
    finally:
        engine.dispose()


def test_tpe_study_lives_in_the_same_database(task, shared_db: str) -> None:  # type: ignore[no-untyped-def]
    result = search(config("tpe"), backend=space_backend(task), db=shared_db)
    assert isinstance(result, SearchResult)
    if shared_db.startswith("postgresql"):
        # the policy disposed of Optuna's connection pool: nothing is left waiting for the GC
        assert open_connections(shared_db) == 0
    name = f"promptopt-{result.run_id}"
    seen = studies_seen_by_another_process(shared_db)
    assert list(seen) == [name] and seen[name]["user_attrs"] == {
        "promptopt_run": result.run_id,
        "space": "fake",
    }
    trials = seen[name]["trials"]
    reported = result.policy_state["trials"]
    assert len(trials) == sum(reported.values()) == 15
    states = {state: sum(1 for t in trials if t["state"] == state) for state in ("COMPLETE", "PRUNED")}
    assert states == {"COMPLETE": reported.get("complete", 0), "PRUNED": reported.get("pruned", 0)}
    assert states["PRUNED"] >= 1  # the median pruner stopped a trial, at a racing stage it was told
    assert all(t["steps"] and t["steps"][0] == 8 for t in trials)  # racing stages were reported (step = n)
    storage = optuna.storages.RDBStorage(shared_db)  # a fresh storage object in this process, too
    study = optuna.load_study(study_name=name, storage=storage)
    assert study.best_trial.user_attrs["candidate"] in {r.candidate.hash for r in result.leaderboard}
    engine = sa.create_engine(shared_db)
    tables = set(sa.inspect(engine).get_table_names())
    with engine.connect() as conn:  # each side has its own version table
        versions = (conn.exec_driver_sql("SELECT version_num FROM po_alembic_version").scalar_one(),
                    conn.exec_driver_sql("SELECT version_num FROM alembic_version").scalar_one())  # fmt: skip
    engine.dispose()
    storage.engine.dispose()
    assert {
        "po_runs",
        "po_evaluations",
        "po_alembic_version",
        "studies",
        "trials",
        "trial_intermediate_values",
        "alembic_version",
    } <= tables
    assert versions[0] == head_revision() and versions[1] != versions[0]
    with Store(shared_db) as store:  # promptopt still opens its database, and the summary says what TPE found
        summary = store.get_run(result.run_id).summary
        entries = leaderboard(store, run=result.run_id, top=None)
    front = [e for e in entries if e.pareto]
    assert front and len(front) < len(entries)
    for e in front:  # nobody is at least as accurate for fewer tokens
        assert not any(o.dev.accuracy >= e.dev.accuracy and o.tokens_per_example < e.tokens_per_example
                       for o in entries if o.dev)  # fmt: skip
    assert summary is not None and summary["policy_state"]["study"] == name
    assert summary["policy_state"]["best_trial"]["value"] == study.best_value
    assert summary["pareto_front"] and set(summary["pareto_front"]) <= {
        r["candidate"] for r in summary["leaderboard"]
    }


def test_tpe_studies_of_two_runs_and_a_resume_share_one_database(task, shared_db: str) -> None:  # type: ignore[no-untyped-def]
    first = search(config("tpe", seed=4), backend=space_backend(task), db=shared_db)
    other = search(config("tpe", seed=5), backend=space_backend(task), db=shared_db)
    assert isinstance(first, SearchResult) and isinstance(other, SearchResult)
    before = studies_seen_by_another_process(shared_db)
    names = {f"promptopt-{first.run_id}", f"promptopt-{other.run_id}"}
    assert set(before) == names  # two runs, two studies, each tied to its own run
    for run in (first, other):
        study = before[f"promptopt-{run.run_id}"]
        assert study["user_attrs"]["promptopt_run"] == run.run_id
        assert len(study["trials"]) == sum(run.policy_state["trials"].values()) == 15
    assert before[f"promptopt-{first.run_id}"] != before[f"promptopt-{other.run_id}"]

    backend = space_backend(task)
    again = search(db=shared_db, resume=first.run_id, backend=backend)
    assert isinstance(again, SearchResult)
    assert again.winner == first.winner and again.test == first.test
    assert backend.history == []  # every call answered from the cache
    after = studies_seen_by_another_process(shared_db)
    assert set(after) == names  # the replay replaced its own study, and only that one
    assert after == before  # ... with the same trials, and left the other run's study alone


def test_tpe_leaves_optuna_log_level_as_it_found_it(task, space: SearchSpace) -> None:  # type: ignore[no-untyped-def]
    records: list[logging.LogRecord] = []

    class Collect(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            records.append(record)

    handler = Collect(logging.DEBUG)
    logger = logging.getLogger("optuna")
    previous = optuna.logging.get_verbosity()
    optuna.logging.set_verbosity(optuna.logging.INFO)
    logger.addHandler(handler)
    try:
        policy, _ = drive("tpe", task, space, seed=0, rounds=2)
        assert optuna.logging.get_verbosity() == optuna.logging.INFO  # the caller's level, back
        assert len(policy.study.trials) >= 10
        assert not [r for r in records if r.levelno < logging.WARNING]  # but no trial was logged
        optuna.create_study()  # and Optuna itself still logs at the caller's level
        assert any(r.levelno == logging.INFO for r in records)
    finally:
        logger.removeHandler(handler)
        optuna.logging.set_verbosity(previous)


def test_reinforce_distribution_is_stored_with_the_run(task, db_url: str, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    result = search(config("reinforce", rounds=3, cost_penalty=0.05), backend=space_backend(task), db=db_url)
    assert isinstance(result, SearchResult)
    with Store(db_url) as store:
        run = store.get_run(result.run_id)
    state = run.summary["policy_state"]  # type: ignore[index]
    assert state["updates"] == 4 and set(state["distribution"]) == set(SPACE["dimensions"])  # type: ignore[arg-type]
    for rows in state["distribution"].values():
        assert abs(sum(r["p"] for r in rows) - 1) < 1e-3
    assert run.config["space"]["name"] == "fake" and run.config["policy_options"]["cost_penalty"] == 0.05


def test_space_policies_refuse_to_run_without_a_space(task) -> None:  # type: ignore[no-untyped-def]
    from promptopt.errors import ConfigError

    with pytest.raises(ConfigError, match="needs a search space"):
        get_policy("random")(Candidate(), Proposer(space_backend(task), task), PolicySettings())
