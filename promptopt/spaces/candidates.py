"""A point of a space turned into a :class:`~promptopt.types.Candidate`, and described.
See :mod:`promptopt.spaces`."""

from __future__ import annotations

import dataclasses
import random
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from promptopt.spaces.model import Point, SearchSpace
from promptopt.types import Candidate

# ------------------------------------------------------------------- point -> Candidate


@dataclass(frozen=True)
class DemoSolutions:
    """Bootstrapped demos: ids of train items and the model's own worked solutions."""

    demo_ids: tuple[str, ...]
    solutions: tuple[tuple[str, str], ...]


#: With ``demo_seed`` over bootstrapped demos, the pool a set is drawn from: this many
#: worked solutions (``bootstrap-random``'s 4 x 4), or the most demos a point shows if more.
BOOTSTRAP_POOL = 16


def bootstrap_count(space: SearchSpace) -> int:
    """How many worked solutions a space policy bootstraps: the most demos a point can
    show, or :data:`BOOTSTRAP_POOL` if more when ``demo_seed`` picks among sets of
    bootstrapped demos (its condition lets it be active with ``bootstrapped``)."""
    most = int(space["n_demos"].options()[-1]) if "n_demos" in space else 0
    if "demo_seed" not in space:
        return most
    seeds = space["demo_seed"]
    chooses = max(int(v) for v in seeds.options()) > 0
    with_bootstrapped = all(c.holds("bootstrapped") for c in seeds.when if c.parent == "demo_selection")
    return max(most, BOOTSTRAP_POOL) if chooses and with_bootstrapped else most


def build_candidate(
    space: SearchSpace,
    point: Point,
    base: Candidate,
    *,
    pool: Sequence[str],
    demo_pool_ids: Sequence[str],
    fixed_demo_ids: Sequence[str] = (),
    bootstrapped: Callable[[int], DemoSolutions] | None = None,
) -> Candidate:
    """The :class:`Candidate` a point describes: ``base`` with every active dimension set.

    ``pool`` is the instruction pool (the point's ``instruction`` is an index into it);
    ``demo_pool_ids`` are the task's demo ids (train minus dev), ``fixed_demo_ids`` the
    task's preferred fixed demos (e.g. its chain-of-thought prompt), ``bootstrapped(k)``
    gives the bootstrapped demos (at least ``k`` when it can). Deterministic: the same
    point gives the same candidate: ``demo_seed`` picks a random demo set, and with
    ``bootstrapped`` a set of ``k`` from the bootstrapped pool (0: its first ``k``)."""
    values: dict[str, Any] = {}
    for dimension in space.dimensions:
        if dimension.name in point:
            values[dimension.name] = point[dimension.name]
        elif dimension.default is not None:
            values[dimension.name] = dimension.default
    changes: dict[str, Any] = {}
    if "instruction" in values:
        changes["instruction"] = pool[int(values["instruction"])]
    for field_name in (
        "cot_mode",
        "cot_trigger",
        "answer_format",
        "samples",
        "temperature",
        "two_stage",
        "rescue",
        "max_tokens",
        "permute",
        "calibration",
    ):
        if field_name in values:
            changes[field_name] = values[field_name]
    if "temperature" in changes:  # Optuna's stepped floats carry binary noise (0.9000000000000001)
        changes["temperature"] = round(float(changes["temperature"]), 6)
    if changes.get("cot_mode") == "none":
        changes["cot_trigger"] = ""
    if "n_demos" in values:
        k = int(values["n_demos"])
        selection = values.get("demo_selection", "random")
        changes.update(demo_ids=(), similar_demos=0, demo_solutions=())
        if k > 0:
            if selection == "similar":
                changes["similar_demos"] = k
            elif selection == "bootstrapped" and bootstrapped is not None:
                found = bootstrapped(k)
                chosen = found.demo_ids[:k]
                seed = int(values.get("demo_seed", 0))
                if seed:  # another set of k from the bootstrapped pool (MIPROv2's demo-set index)
                    drawn = random.Random(f"bootstrapped:{seed}:{k}").sample(
                        list(found.demo_ids), len(found.demo_ids)
                    )
                    chosen = tuple(drawn[:k])
                changes["demo_ids"] = chosen
                changes["demo_solutions"] = tuple(p for p in found.solutions if p[0] in chosen)
            elif selection == "fixed":
                ordered = list(dict.fromkeys([*fixed_demo_ids, *demo_pool_ids]))
                changes["demo_ids"] = tuple(ordered[:k])
            else:  # random, and bootstrapped without a bootstrapper
                rng = random.Random(f"demos:{values.get('demo_seed', 0)}:{k}")
                changes["demo_ids"] = tuple(rng.sample(list(demo_pool_ids), min(k, len(demo_pool_ids))))
            order = values.get("demo_order", "as_selected")
            ids = list(changes["demo_ids"])
            if order == "reversed":
                ids.reverse()
            elif order == "shuffled":
                random.Random(f"order:{','.join(ids)}").shuffle(ids)
            changes["demo_ids"] = tuple(ids)
    if changes.get("calibration", base.calibration) != "none":
        from promptopt.bias.space import direct_answer

        changes = direct_answer(base, changes)
    return dataclasses.replace(base, **changes)


def describe_point(space: SearchSpace, point: Point, pool: Sequence[str]) -> dict[str, Any]:
    """The point with the instruction index replaced by its text (for people)."""
    out = dict(point)
    if "instruction" in out and int(out["instruction"]) < len(pool):
        out["instruction"] = pool[int(out["instruction"])]
    return out
