"""What decides a search: :class:`SearchConfig`, stored with the run and used to resume
it, and the budget presets (``light``, ``medium``, ``heavy``) it is made from.

A policy's own options and its own presets are the policy's (``Options`` and ``presets``
on its class, :mod:`promptopt.policies.options`): the config carries the options' values
as ``policy_options`` and checks them against the policy; it names no policy."""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from promptopt.budget import Budget
from promptopt.errors import ConfigError
from promptopt.types import Candidate

PRESETS: dict[str, dict[str, Any]] = {
    # proposals in the first round, rounds after it (each policy says what a round is), dev and test sizes.
    "light": {"n_proposals": 6, "rounds": 1, "paraphrases": 2, "top_k": 2, "dev_size": 30, "race_start": 8,
              "final_top": 3, "test_size": 100},
    "medium": {"n_proposals": 12, "rounds": 2, "paraphrases": 3, "top_k": 3, "dev_size": 100, "race_start": 10,
               "final_top": 3, "test_size": 200},
    "heavy": {"n_proposals": 24, "rounds": 4, "paraphrases": 4, "top_k": 4, "dev_size": 200, "race_start": 20,
              "final_top": 5, "test_size": None},
}  # fmt: skip
DEMO_TEACHERS = ("task", "proposer")  # SearchConfig.demo_teacher
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
    # Who writes the worked solutions of bootstrapped demos (promptopt.bootstrap): "task",
    # the task model's own correct work (DSPy's BootstrapFewShot, Wan et al.); "proposer",
    # the proposer's model (a stronger teacher), checked against the gold answers the same way.
    demo_teacher: str = "task"
    data_dir: str | None = None
    budget: Budget = field(default_factory=Budget)
    backend_options: Mapping[str, Any] = field(default_factory=dict)
    # Policies over a search space (``needs_space``): a space name, a YAML path, or
    # the parsed space (what is stored with the run, so a resume does not need the file).
    # None: the space named after the task if there is one, else ``default``.
    space: str | Mapping[str, Any] | None = None
    workers: int = 0  # 0: the serial evaluator; N: a Ray pool of N model workers
    ray_address: str | None = None  # "auto" or "ray://host:port" to join a cluster
    # Ray custom resources each model worker asks for, e.g. {"worker_node": 0.01}: places the
    # workers on the nodes that offer them (None: anywhere, the driver's node included).
    ray_resources: Mapping[str, float] | None = None
    # The metric the run scores with, as stored (promptopt.metrics): None is the task's own.
    # User code (a reference or a callable) is kept as its reference and never imported
    # from the store: a resume needs the user to name it again.
    metric: Any = None
    max_judge_calls: int | None = None  # llm_judge: a limit on the judge's calls, apart from the task's
    # The final pick (promptopt.selection): "best" the best dev mean; "noise-aware" the
    # cheapest finalist statistically tied with it (paired test on the shared items);
    # "balanced" the best balanced accuracy on dev (mean over gold answers), which the race
    # (promptopt.racing) then ranks by as well.
    selection: str = "best"
    # The policy's own options by name (the fields of its ``Options``, e.g. reflect's
    # ``minibatch``): checked against them here, and kept with every one of them, the
    # defaults included, so that a resume runs with the values the run started with.
    policy_options: Mapping[str, Any] = field(default_factory=dict)

    @property
    def balanced_race(self) -> bool:
        """The race ranks by balanced accuracy (``selection="balanced"``, promptopt.racing)."""
        return self.selection == "balanced"

    def __post_init__(self) -> None:
        from promptopt.policies import POLICIES
        from promptopt.policies.options import options_dict
        from promptopt.selection import SELECTIONS

        if self.selection not in SELECTIONS:
            raise ConfigError(
                f"unknown selection {self.selection!r}; expected one of {', '.join(SELECTIONS)}"
            )
        if self.demo_teacher not in DEMO_TEACHERS:
            raise ConfigError(
                f"unknown demo teacher {self.demo_teacher!r}; expected one of {', '.join(DEMO_TEACHERS)}"
            )
        policy = POLICIES.get(self.policy)
        # A policy not registered (yet) in this process is checked when the search gets it.
        given = self.policy_options
        options = dict(given) if policy is None else options_dict(policy.read_options(given))
        object.__setattr__(self, "policy_options", options)

    @classmethod
    def from_preset(cls, preset: str, **overrides: Any) -> SearchConfig:
        """The preset's sizes, the policy's own for that preset, then ``overrides`` (None
        values skipped). A policy's options go in ``policy_options={...}``, or as keywords
        of their own (``minibatch=8``, as before they were the policy's): an option of
        another policy given as a keyword is ignored, as it was then."""
        from promptopt.policies import POLICIES

        if preset not in PRESETS:
            raise ConfigError(f"unknown budget preset {preset!r}; expected one of {', '.join(PRESETS)}")
        policy = POLICIES.get(overrides.get("policy") or cls.policy)
        by_policy = policy.presets.get(preset, {}) if policy is not None else {}
        values = {**PRESETS[preset], **by_policy, **{k: v for k, v in overrides.items() if v is not None}}
        options = dict(values.pop("policy_options", None) or {})
        for name, value in _option_keywords(cls, values, policy).items():
            options.setdefault(name, value)
        _refuse_unknown(cls, values)
        required = [f.name for f in dataclasses.fields(cls) if f.name not in values and _required(f)]
        if required:
            raise ConfigError(
                f"SearchConfig.from_preset: give {', '.join(required)}",
                hint="base is the starting prompt: promptopt.evaluation.make_candidate(task), or a Candidate"
                if "base" in required
                else None,
            )
        return cls(preset=preset, policy_options=options, **values)

    def to_dict(self) -> dict[str, Any]:
        data = {f.name: getattr(self, f.name) for f in dataclasses.fields(self)}
        data["base"] = self.base.to_dict()
        data["budget"] = self.budget.to_dict()
        data["backend_options"] = dict(self.backend_options)
        data["policy_options"] = dict(self.policy_options)
        if isinstance(self.space, Mapping):
            data["space"] = dict(self.space)
        return data

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> SearchConfig:
        """The config a run stored. Runs stored before the policies owned their options
        keep them at the top level (``minibatch``, ``dspy_share``...): the policy's own
        move into ``policy_options``, the other policies' are dropped."""
        from promptopt.policies import POLICIES

        known = {f.name for f in dataclasses.fields(cls)}
        values = {k: v for k, v in data.items() if k in known}
        values["base"] = Candidate.from_dict(values["base"])
        values["budget"] = Budget(**values.get("budget", {}))
        rest = {k: v for k, v in data.items() if k not in known}
        older = _option_keywords(cls, rest, POLICIES.get(values.get("policy") or cls.policy))
        values["policy_options"] = {**older, **dict(values.get("policy_options") or {})}
        return cls(**values)


def _required(f: dataclasses.Field[Any]) -> bool:
    """Whether a config field has no default (task, model, base)."""
    return f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING


def _refuse_unknown(cls: type[SearchConfig], values: Mapping[str, Any]) -> None:
    """A keyword that is neither a config field nor any policy's option (a typo: ``minibath``)
    is a ConfigError naming the closest, not a TypeError from the constructor."""
    import difflib

    fields = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(k for k in values if k not in fields)
    if not unknown:
        return
    close = difflib.get_close_matches(unknown[0], sorted(fields | _every_option()), n=3)
    raise ConfigError(
        f"unknown search setting{'s' if len(unknown) > 1 else ''}: {', '.join(unknown)}",
        hint=f"did you mean {' or '.join(close)}?"
        if close
        else "the settings are SearchConfig's fields and the policy's options (its Options class)",
    )


def _every_option() -> set[str]:
    """The option names of every registered policy."""
    from promptopt.policies import POLICIES
    from promptopt.policies.options import option_specs

    return {s.name for p in POLICIES.values() for s in option_specs(p.Options)}


def _option_keywords(cls: type[SearchConfig], values: dict[str, Any], policy: Any) -> dict[str, Any]:
    """Remove from ``values`` the keys that are options of a registered policy rather than
    fields of the config; return those of ``policy``."""
    from promptopt.policies.options import option_specs

    fields = {f.name for f in dataclasses.fields(cls)}
    every = _every_option()
    own = {s.name for s in option_specs(policy.Options)} if policy is not None else set()
    found = {}
    for name in [k for k in values if k not in fields and k in every]:
        value = values.pop(name)
        if name in own:
            found[name] = value
    return found
