"""What decides a search: :class:`SearchConfig`, stored with the run and used to resume
it, and the budget presets (``light``, ``medium``, ``heavy``) it is made from."""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from promptopt.budget import Budget
from promptopt.errors import ConfigError
from promptopt.types import Candidate

PRESETS: dict[str, dict[str, Any]] = {
    # proposals in round 0, resampling rounds (APE) or steps (OPRO), dev and test sizes.
    "light": {"n_proposals": 6, "rounds": 1, "paraphrases": 2, "top_k": 2, "dev_size": 30, "race_start": 8,
              "final_top": 3, "test_size": 100},
    "medium": {"n_proposals": 12, "rounds": 2, "paraphrases": 3, "top_k": 3, "dev_size": 100, "race_start": 10,
               "final_top": 3, "test_size": 200},
    "heavy": {"n_proposals": 24, "rounds": 4, "paraphrases": 4, "top_k": 4, "dev_size": 200, "race_start": 20,
              "final_top": 5, "test_size": None},
}  # fmt: skip
# Where a policy spends a preset's proposals differently. OPRO learns from the scores of its
# own proposals, so it gets several small steps (the paper's loop) instead of one big one:
# light 4 steps x 2 (8 proposals, APE's light writes 6 + 2 x 2), medium 6 x 4, heavy 8 x 8.
POLICY_PRESETS: dict[str, dict[str, dict[str, Any]]] = {
    "opro": {"light": {"n_proposals": 2, "rounds": 4}, "medium": {"n_proposals": 4, "rounds": 6},
             "heavy": {"n_proposals": 8, "rounds": 8}},
}  # fmt: skip

SIGNIFICANCE = 0.05  # the level of the paired test of winner against starting prompt


@dataclass(frozen=True)
class SearchConfig:
    """Everything that decides a search; stored with the run and used to resume it."""

    task: str
    model: str
    base: Candidate
    policy: str = "ape"
    slot: str = "instruction"
    preset: str = "light"
    n_proposals: int = 6
    rounds: int = 1
    paraphrases: int = 2
    top_k: int = 2
    dev_size: int = 30
    race_start: int = 8
    race_eta: float = 2.0
    final_top: int = 3
    test_size: int | None = 100
    seed: int = 0
    batch_size: int = 16
    proposer_model: str | None = None
    proposer_temperature: float = 0.9
    data_dir: str | None = None
    budget: Budget = field(default_factory=Budget)
    backend_options: Mapping[str, Any] = field(default_factory=dict)
    # Policies over a search space (tpe, reinforce, random): a space name, a YAML path, or
    # the parsed space (what is stored with the run, so a resume does not need the file).
    # None: the space named after the task if there is one, else ``default``.
    space: str | Mapping[str, Any] | None = None
    cost_penalty: float = 0.0
    workers: int = 0  # 0: the serial evaluator; N: a Ray pool of N model workers
    ray_address: str | None = None  # "auto" or "ray://host:port" to join a cluster
    # Ray custom resources each model worker asks for, e.g. {"worker_node": 0.01}: places the
    # workers on the nodes that offer them (None: anywhere, the driver's node included).
    ray_resources: Mapping[str, float] | None = None
    dspy_threads: int = 1  # dspy-* policies: DSPy's evaluation threads, their requests joined in batches
    # dspy-* policies: DSPy's share of a call limit (None: the policy's, half)
    dspy_share: float | None = None
    # The metric the run scores with, as stored (promptopt.metrics): None is the task's own.
    # User code (a reference or a callable) is kept as its reference and never imported
    # from the store: a resume needs the user to name it again.
    metric: Any = None
    max_judge_calls: int | None = None  # llm_judge: a limit on the judge's calls, apart from the task's
    minibatch: int = 6  # reflect: train items a parent and its child answer before the child is raced
    reflect_demos: int = 0  # reflect: K > 0 makes every other step a swap to K bootstrapped demos
    reflect_merge: bool = False  # reflect: every third step merges two frontier candidates
    # The final pick (promptopt.selection): "best" the best dev mean; "noise-aware" the
    # cheapest finalist statistically tied with it (paired test on the shared items).
    selection: str = "best"

    def __post_init__(self) -> None:
        from promptopt.selection import SELECTIONS

        if self.selection not in SELECTIONS:
            raise ConfigError(
                f"unknown selection {self.selection!r}; expected one of {', '.join(SELECTIONS)}"
            )

    @classmethod
    def from_preset(cls, preset: str, **overrides: Any) -> SearchConfig:
        if preset not in PRESETS:
            raise ConfigError(f"unknown budget preset {preset!r}; expected one of {', '.join(PRESETS)}")
        by_policy = POLICY_PRESETS.get(overrides.get("policy") or "", {}).get(preset, {})
        values = {**PRESETS[preset], **by_policy, **{k: v for k, v in overrides.items() if v is not None}}
        return cls(preset=preset, **values)

    def to_dict(self) -> dict[str, Any]:
        data = {f.name: getattr(self, f.name) for f in dataclasses.fields(self)}
        data["base"] = self.base.to_dict()
        data["budget"] = self.budget.to_dict()
        data["backend_options"] = dict(self.backend_options)
        if isinstance(self.space, Mapping):
            data["space"] = dict(self.space)
        return data

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> SearchConfig:
        known = {f.name for f in dataclasses.fields(cls)}
        values = {k: v for k, v in data.items() if k in known}
        values["base"] = Candidate.from_dict(values["base"])
        values["budget"] = Budget(**values.get("budget", {}))
        return cls(**values)
