"""``reinforce``: a stochastic policy over the factored search space, trained by REINFORCE.

The policy is one softmax per dimension (over its choices; integer and float dimensions
over their discrete levels, instruction over the pool's slots). A round samples
``n_proposals`` points; the controller races them; each point's reward is its minibatch
(racing) score on dev, optionally minus ``cost_penalty`` per extra call per example.
The update, averaged over the batch, for every dimension a point actually used:

    logits += lr * ((reward - baseline) * (onehot(choice) - p)  +  entropy_coef * dH/dlogits)

with ``baseline`` a moving average of past rewards (it starts at the first batch's mean)
and the entropy bonus keeping the policy from collapsing on a noisy early winner.
Conditional dimensions are only sampled, and only updated, when active. Seeded, so the
same seed and the same scores give the same sequence of candidates.

The learned distribution (which choices it came to prefer) is part of the run summary.
"""

from __future__ import annotations

import math
import random
from collections.abc import Sequence
from typing import Any

from promptopt.policies.base import PolicySettings, SpacePolicy, register_policy
from promptopt.proposers import Proposer
from promptopt.racing import Standing
from promptopt.spaces import Dimension, Point
from promptopt.types import Candidate


def softmax(logits: Sequence[float]) -> list[float]:
    top = max(logits)
    weights = [math.exp(v - top) for v in logits]
    total = sum(weights)
    return [w / total for w in weights]


def entropy_gradient(probs: Sequence[float]) -> list[float]:
    """d/dlogits of H = -sum p log p, which is -p_i (log p_i + H)."""
    entropy = -sum(p * math.log(p) for p in probs if p > 0)
    return [-p * (math.log(p) + entropy) if p > 0 else 0.0 for p in probs]


@register_policy("reinforce")
class ReinforcePolicy(SpacePolicy):
    """Softmax per dimension, REINFORCE with a moving-average baseline and entropy bonus."""

    learning_rate = 3.0
    baseline_decay = 0.7
    entropy_coef = 0.02

    def __init__(self, base: Candidate, proposer: Proposer, settings: PolicySettings) -> None:
        super().__init__(base, proposer, settings)
        self.rng = random.Random(f"reinforce:{settings.seed}")
        self.choices: dict[str, list[Any]] = {
            d.name: self.dimension_options(d) for d in self.space.dimensions
        }
        self.logits: dict[str, list[float]] = {name: [0.0] * len(c) for name, c in self.choices.items()}
        self.baseline: float | None = None
        self.updates = 0
        self.rewards: list[float] = []

    def probabilities(self, name: str) -> list[float]:
        return softmax(self.logits[name])

    def _choose(self, dimension: Dimension) -> Any:
        probs = self.probabilities(dimension.name)
        index = self.rng.choices(range(len(probs)), weights=probs)[0]
        return self.choices[dimension.name][index]

    def next_points(self, n: int) -> list[Point]:
        return [self.space.sample(self._choose) for _ in range(n)]

    def learn(self, batch: Sequence[tuple[Point, Standing]]) -> None:
        rewards = [self.reward(point, standing) for point, standing in batch]
        self.rewards.extend(rewards)
        mean_reward = sum(rewards) / len(rewards)
        baseline = mean_reward if self.baseline is None else self.baseline
        grads = {name: [0.0] * len(values) for name, values in self.logits.items()}
        for (point, _), reward in zip(batch, rewards, strict=True):
            advantage = reward - baseline
            for name, value in point.items():
                probs = self.probabilities(name)
                chosen = self.choices[name].index(value) if value in self.choices[name] else None
                if chosen is None:
                    continue
                for i, p in enumerate(probs):
                    grads[name][i] += advantage * ((1.0 if i == chosen else 0.0) - p) / len(batch)
        for name in self.logits:
            bonus = entropy_gradient(self.probabilities(name))
            self.logits[name] = [
                v + self.learning_rate * (g + self.entropy_coef * b)
                for v, g, b in zip(self.logits[name], grads[name], bonus, strict=True)
            ]
        self.baseline = (
            mean_reward if self.baseline is None
            else self.baseline_decay * self.baseline + (1 - self.baseline_decay) * mean_reward
        )  # fmt: skip
        self.updates += 1

    def distribution(self) -> dict[str, list[dict[str, Any]]]:
        """Each dimension's choices with their probabilities, most likely first."""
        out: dict[str, list[dict[str, Any]]] = {}
        for dimension in self.space.dimensions:
            probs = self.probabilities(dimension.name)
            rows = []
            for value, p in zip(self.choices[dimension.name], probs, strict=True):
                label = value
                if dimension.kind == "pool":
                    label = (
                        self.pool[value] if value < len(self.pool) else f"(slot {value}, not yet proposed)"
                    )
                rows.append({"choice": label, "p": round(p, 4)})
            out[dimension.name] = sorted(rows, key=lambda r: -r["p"])
        return out

    def describe(self) -> dict[str, Any]:
        data = super().describe()
        data.update({
            "updates": self.updates,
            "baseline": self.baseline,
            "distribution": self.distribution(),
            "preferred": {name: rows[0]["choice"] for name, rows in self.distribution().items()},
        })  # fmt: skip
        return data
