"""``random``: points drawn uniformly from the search space — the honest baseline every
other policy is compared against (same space, same racing, same budget)."""

from __future__ import annotations

import random
from collections.abc import Sequence
from typing import Any

from promptopt.policies.base import PolicySettings, SpacePolicy, register_policy
from promptopt.proposers import Proposer
from promptopt.racing import Standing
from promptopt.spaces import Dimension, Point
from promptopt.types import Candidate


@register_policy("random")
class RandomSearchPolicy(SpacePolicy):
    """Uniform over every active dimension (pool slots included); learns nothing. A point
    whose prompt was raced already is drawn again (uniform over what is left, nearly)."""

    redraw_repeats = True

    def __init__(self, base: Candidate, proposer: Proposer, settings: PolicySettings) -> None:
        super().__init__(base, proposer, settings)
        self.rng = random.Random(f"random-search:{settings.seed}")

    def choose(self, dimension: Dimension) -> Any:
        if dimension.kind in ("categorical", "pool"):
            return self.rng.choice(self.dimension_options(dimension))
        return dimension.uniform(self.rng)

    def next_points(self, n: int) -> list[Point]:
        return [self.space.sample(self.choose) for _ in range(n)]

    def learn(self, batch: Sequence[tuple[Point, Standing]]) -> None:
        return None
