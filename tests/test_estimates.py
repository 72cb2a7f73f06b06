"""The space policies' estimate on a finite space: each distinct point (and the starting
prompt) at most once on every dev item, whatever the rounds; a space whose points cannot
be listed keeps the bound of its rounds' races."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

import pytest

from promptopt.backends import FakeBackend
from promptopt.budget import Budget
from promptopt.controller import SearchConfig, SearchResult, search
from promptopt.policies.estimates import FINITE_POINTS, finite_space_calls, space_estimate
from promptopt.racing import schedule_size
from promptopt.spaces import load_space
from promptopt.tasks import Task
from promptopt.types import Candidate
from tests.test_answer_bias import biased_reply, biased_scores, mc_task

BASE = Candidate(instruction="Pick the right option.")

# cot_mode none (the trigger inactive) or zero_shot with one of two triggers, times 1 or 3
# samples: (1 + 2) x 2 = 6 points, though the product of the choices is 2 x 2 x 2 = 8.
SMALL = {
    "name": "small",
    "dimensions": {
        "cot_mode": {"type": "categorical", "choices": ["none", "zero_shot"]},
        "cot_trigger": {"type": "categorical", "choices": ["Think.", "Go slowly."], "when": {"cot_mode": ["zero_shot"]}},
        "samples": {"type": "categorical", "choices": [1, 3]},
    },
}  # fmt: skip


def _config(space: Any, **options: Any) -> SearchConfig:
    settings = {"policy": "random", "n_proposals": 4, "rounds": 2, "seed": 1, "dev_size": 4, "race_start": 4,
                **options}  # fmt: skip
    return SearchConfig.from_preset(
        "light", task="records", model="fake", base=BASE, space=space, test_size=8, **settings
    )


def _races_bound(config: SearchConfig, dev: int, per_eval: int) -> int:
    """The rounds' bound, by hand: ``rounds + 1`` races, the first with the starting prompt."""
    return per_eval * sum(
        schedule_size(config.n_proposals + (r == 0), dev, start=config.race_start, eta=config.race_eta,
                      keep=config.top_k)
        for r in range(config.rounds + 1)
    )  # fmt: skip


def test_the_points_of_answer_bias_only_are_counted_by_hand() -> None:
    points = load_space("answer-bias-only").points(FINITE_POINTS)
    assert points is not None
    # permute 1 or 3, each uncalibrated or with each of the three calibrations
    calibrations = ("none", "contextual", "batch", "position")
    assert sorted(map(str, points)) == sorted(
        map(str, [{"permute": k, "calibration": c} for k in (1, 3) for c in calibrations])
    )  # fmt: skip
    task = mc_task(n_items=24)  # 4 dev items of 3 options
    config = _config("answer-bias-only")
    # per dev item: the starting prompt 1, permute 3 uncalibrated (3 orderings + 3 tie-break
    # scorings) 6, permute 1 uncalibrated 1, each calibration 1 with permute 1 and 3 (a scoring
    # call per ordering) with permute 3 -> 1 + 6 + 1 + 3 + 9 = 20; once per candidate:
    # contextual's 3 content-free inputs and position's 4 items x 3 shifts, for permute 1
    # and 3 -> 30 (an upper bound: the permuted ones share these requests through the cache)
    assert finite_space_calls(config, task, load_space("answer-bias-only"), 4) == 20 * 4 + 30
    plan = space_estimate(config, task)
    assert plan["search_calls"] == 20 * 4 + 30 < _races_bound(config, 4, 6)


def test_a_small_categorical_space_is_counted_with_its_conditions() -> None:
    space = load_space(SMALL)
    points = space.points(FINITE_POINTS)
    assert points is not None and len(points) == 6
    task = mc_task(n_items=24)
    config = _config(SMALL)
    # per dev item: the starting prompt 1, three points of 1 sample, three of 3 -> 13
    assert finite_space_calls(config, task, space, 4) == 13 * 4
    assert space_estimate(config, task)["search_calls"] == 13 * 4 < _races_bound(config, 4, 3)
    assert space.points(5) is None  # more points than the limit: not listed


@pytest.mark.parametrize(("space", "policy"), [("answer-bias-only", "tpe"), ("answer-bias-only", "random"),
                                               ("answer-bias-only", "reinforce"), (SMALL, "random"), (SMALL, "tpe")])  # fmt: skip
def test_a_search_on_a_finite_space_spends_within_the_estimate(
    space: Any, policy: str, tmp_path: Path
) -> None:
    task = mc_task(n_items=24)
    config = _config(space, policy=policy, rounds=3)  # 16 draws of a space of 8 or 6 points
    plan = search(config, task=task, dry_run=True, db=f"sqlite:///{tmp_path / 'plan.db'}")
    assert isinstance(plan, dict) and plan["search_calls"] < _races_bound(config, 4, 3)
    result = search(config, task=task, backend=FakeBackend(biased_reply, scorer=biased_scores),
                    db=f"sqlite:///{tmp_path / 's.db'}")  # fmt: skip
    assert isinstance(result, SearchResult)
    assert 0 < result.spent["calls"] <= plan["search_calls"]
    assert result.final_calls <= plan["final_calls"]


def _small_with(**more: Any) -> dict[str, Any]:
    """:data:`SMALL` with ``more`` dimensions."""
    return {"name": "small-and-more", "dimensions": {**SMALL["dimensions"], **more}}  # type: ignore[dict-item]


def test_a_space_with_a_float_dimension_keeps_the_bound_of_its_races() -> None:
    task = mc_task(n_items=24)
    drawn = _small_with(temperature={"type": "float", "low": 0.2, "high": 1.0, "when": {"samples": [3]}})
    assert load_space(drawn).points(FINITE_POINTS) is None  # drawn from the whole range
    config = _config(drawn)
    assert finite_space_calls(config, task, load_space(drawn), 4) is None
    assert space_estimate(config, task)["search_calls"] == _races_bound(config, 4, 3)
    # with a step, the grid is all a policy draws from: 6 points, 3 of them x 5 temperatures
    stepped = _small_with(temperature={"type": "float", "low": 0.2, "high": 1.0, "step": 0.2,
                                            "when": {"samples": [3]}})  # fmt: skip
    points = load_space(stepped).points(FINITE_POINTS)
    assert points is not None and len(points) == 3 + 3 * 5
    # ... but a condition on a float cannot be read from the grid (Optuna's 0.6000000000000001)
    on_float = _small_with(temperature={"type": "float", "low": 0.2, "high": 1.0, "step": 0.2},
                            max_tokens={"type": "categorical", "choices": [64, 128], "when": {"temperature": {"max": 0.6}}})  # fmt: skip
    assert load_space(on_float).points(FINITE_POINTS) is None


def test_the_instruction_pool_counts_its_slots_and_a_large_space_keeps_the_bound_of_its_races() -> None:
    pooled = _small_with(instruction={"type": "pool", "seeds": ["Answer.", "Reply."], "grow": {"max": 3}})
    space = load_space(pooled)
    assert space["instruction"].finite_options() == [0, 1, 2, 3, 4, 5]  # the starting one, 2 seeds, 3 grown
    assert (points := space.points(FINITE_POINTS)) is not None and len(points) == 6 * 6
    # default: 7 slots x 5 chain-of-thought settings x 77 demo settings x 9 sampling settings
    assert load_space("default").points(FINITE_POINTS) is None
    task = Task.from_records(
        [{"q": f"{i} + 1?", "a": str(i + 1)} for i in range(60)],
        input_fields=["q"],
        target_field="a",
        dev_size=20,
    )
    config = _config("default", dev_size=20, race_start=8)
    dev = min(config.dev_size, len(task.examples("dev")))
    # 4 grown slots, each its proposal and a paraphrase, each retried once; bootstrapping a
    # pool of 16 demos (demo_seed picks sets of up to 4 from it)
    proposer_and_boot = 4 * 4 + max(4 * 16, 16 + 8)
    assert space_estimate(config, task)["search_calls"] == _races_bound(config, dev, 3) + proposer_and_boot


def test_the_budget_note_on_an_exhausted_finite_space_says_more_rounds_spend_no_more() -> None:
    from promptopt.controller import estimate

    task = mc_task(n_items=24)
    plan = estimate(_config("answer-bias-only", budget=Budget(max_calls=5000)), task)
    assert plan["space_points"] == 8
    assert "space answer-bias-only has 8 distinct points" in plan["note"]
    assert f"at most {plan['search_calls']} calls, under --max-calls 5000" in plan["note"]
    assert "raise --rounds" not in plan["note"]
    # a large space keeps the rounds' note
    assert "raise --rounds" in estimate(_config("default", budget=Budget(max_calls=50_000)), task)["note"]


POOLED = _small_with(instruction={"type": "pool", "seeds": ["Answer."], "grow": {"max": 3}})


@pytest.mark.parametrize(
    ("policy", "space"), [("ape", None), ("opro", None), ("random", POOLED), ("tpe", POOLED)]
)
def test_a_proposer_whose_proposals_are_all_dropped_spends_within_the_estimate(
    policy: str, space: Any, tmp_path: Path
) -> None:
    # Every reply of the proposer is empty, so dropped: each proposal is retried, and with a
    # short starting instruction each paraphrase (and OPRO) is induction from demos, retried too.
    task = mc_task(n_items=24)
    config = dataclasses.replace(
        _config(space, policy=policy, rounds=3, paraphrases=2), base=Candidate(instruction="Pick.")
    )
    plan = search(config, task=task, dry_run=True, db=f"sqlite:///{tmp_path / 'plan.db'}")
    assert isinstance(plan, dict)
    proposer = FakeBackend(lambda request: "")
    result = search(config, task=task, backend=FakeBackend(biased_reply, scorer=biased_scores),
                    proposer_backend=proposer, db=f"sqlite:///{tmp_path / 's.db'}")  # fmt: skip
    assert isinstance(result, SearchResult)
    assert 0 < len(proposer.history) <= plan["proposer_calls"]
    assert result.spent["calls"] <= plan["search_calls"]


def test_the_estimate_counts_only_the_answer_bias_choices_the_task_allows() -> None:
    yes_no = Task.from_records(
        [{"q": f"Is {i} even?", "a": "yes" if i % 2 == 0 else "no"} for i in range(40)],
        input_fields=["q"], target_field="a", dev_size=8,
    )  # fmt: skip
    config = _config("answer-bias-only", dev_size=8, race_start=8, budget=Budget(max_calls=5000))
    plan = space_estimate(config, yes_no)
    # no options to reorder, no positions: permute 1 with none, contextual or batch, and the
    # starting prompt, each once on 8 dev items, plus contextual's 3 content-free inputs
    assert plan["space_points"] == 3
    assert plan["search_calls"] == 4 * 8 + 3
    mc_plan = space_estimate(config, mc_task(n_items=40))  # a multiple-choice task keeps them all
    assert mc_plan["space_points"] == 8 and mc_plan["search_calls"] > plan["search_calls"]
