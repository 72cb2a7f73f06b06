"""``bootstrap-random`` (issue #21): random search over the model's own correct worked
solutions as 4-shot demos, on the space fake (whose accuracy rises with worked demos)."""

from __future__ import annotations

from promptopt.budget import Budget
from promptopt.controller import SearchConfig, SearchResult, search
from promptopt.tasks import get_task
from promptopt.testing.space_fakes import space_backend
from promptopt.types import Candidate


def run(seed: int = 0, max_calls: int = 300) -> tuple[SearchResult, dict]:
    task = get_task("gsm-symbolic")
    base = Candidate(instruction=task.spec.instruction, answer_format=task.spec.answer_format,
                     cot_mode="zero_shot", cot_trigger="Let's think step by step.")  # fmt: skip
    config = SearchConfig.from_preset(
        "light", task="gsm-symbolic", model="fake", base=base, policy="bootstrap-random", dev_size=16,
        test_size=20, n_proposals=4, rounds=2, race_start=4, seed=seed, budget=Budget(max_calls=max_calls),
    )  # fmt: skip
    plan = search(config, db="sqlite://", dry_run=True, task=task)
    result = search(config, backend=space_backend(task), db="sqlite://", task=task)
    assert isinstance(result, SearchResult) and isinstance(plan, dict)
    return result, plan


def test_bootstrap_random_races_sets_of_the_models_own_correct_solutions() -> None:
    result, plan = run()
    state = result.policy_state
    assert state["shots"] == 4 and state["bootstrapped"] == 16 and state["bootstrap_tried"] >= 16
    sets = [r.candidate for r in result.leaderboard if r.origin == "bootstrap-random"]
    assert len(sets) >= 4 and len({c.hash for c in sets}) == len(sets)
    for candidate in sets:
        assert len(candidate.demo_ids) == 4 and candidate.cot_mode == "few_shot"
        # every demo carries the solution the model wrote (bootstrapped), not the data's
        assert {i for i, _ in candidate.demo_solutions} == set(candidate.demo_ids)
        assert candidate.instruction == result.baseline.instruction
    # on this fake worked demos help: the winner is a demo set and beats the start on test
    assert result.winner.demo_ids and result.test["winner"]["accuracy"] > result.test["baseline"]["accuracy"]
    assert result.spent["calls"] <= plan["search_calls"]


def test_bootstrap_random_is_seeded() -> None:
    first, _ = run(seed=3)
    again, _ = run(seed=3)
    other, _ = run(seed=4)
    assert [r.candidate.hash for r in first.leaderboard] == [r.candidate.hash for r in again.leaderboard]
    assert {r.candidate.hash for r in first.leaderboard} != {r.candidate.hash for r in other.leaderboard}
