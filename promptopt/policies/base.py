"""The policy interface and its registry.

A policy proposes; the controller decides where and how far candidates are evaluated
(racing on dev) and tells the policy how they stood. Contract:

- ``ask()`` returns the next pool of candidates to race, parents included when they
  should compete again; an empty list means the policy is done.
- ``tell(standings)`` receives the standing of every candidate of that pool.
- A policy is deterministic given its seed and the standings it is told, so a resumed
  search makes the same choices.
"""

from __future__ import annotations

import dataclasses
import difflib
from abc import ABC, abstractmethod
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, ClassVar

from promptopt.errors import ConfigError
from promptopt.policies.options import PolicyOptions, option, read_options
from promptopt.proposers import Proposer
from promptopt.racing import Standing, rank
from promptopt.types import Candidate, EvalResult, Example

MAX_REDRAWS = 50

PolicyEvaluate = Callable[[Candidate, Sequence[Example], str, str, "str | None"], list[EvalResult]]

if TYPE_CHECKING:
    from promptopt.backends.base import Backend
    from promptopt.bootstrap import BootstrapReport
    from promptopt.search_config import SearchConfig
    from promptopt.spaces import DemoSolutions, Dimension, Point, SearchSpace
    from promptopt.tasks import Task


@dataclass(frozen=True)
class Proposal:
    candidate: Candidate
    origin: str  # "seed", "ape", "ape-resample", "opro", ...
    parent: str | None = None


@dataclass(frozen=True)
class PolicySettings:
    """How much a policy proposes (the presets: :mod:`promptopt.search_config` and the
    policy's own ``presets``), what it works on, and its own ``options``."""

    n_proposals: int = 8
    rounds: int = 2
    paraphrases: int = 3
    top_k: int = 2
    seed: int = 0
    # What the policies over a search space (tpe, reinforce, random) need besides:
    space: SearchSpace | None = None
    task: Task | None = None
    backend: Backend | None = None  # the task model (cached, budgeted)
    # The model that writes bootstrapped demos' worked solutions (SearchConfig.demo_teacher):
    # None, the task model (``backend``).
    teacher: Backend | None = None
    run_id: str = ""
    store_url: str | None = None  # the Optuna study lives in the same database
    race_start: int = 8
    dev_size: int | None = None  # dev examples the controller races on (None: not said)
    # The policy's own options (an instance of its ``Options``, or their values by name);
    # None: their defaults.
    options: PolicyOptions | Mapping[str, Any] | None = None
    # Policies that evaluate on their own (reflect's minibatches) do it through the controller's
    # evaluator (stored, budgeted, cached, on the Ray pool when there is one):
    # evaluate(candidate, examples, split, origin, parent) -> results in the order of examples;
    # known(candidate, split) -> results already computed in this search.
    evaluate: PolicyEvaluate | None = None
    known: Callable[[Candidate, str], list[EvalResult]] | None = None

    @property
    def demo_backend(self) -> Backend | None:
        """The backend bootstrapping asks: the teacher's, else the task model's."""
        return self.teacher if self.teacher is not None else self.backend


class Policy(ABC):
    name: ClassVar[str]
    needs_space: ClassVar[bool] = False
    # Bootstraps demos through ``settings.demo_backend`` (so ``SearchConfig.demo_teacher``
    # means something to it): the space policies, bootstrap-random, reflect.
    bootstraps: ClassVar[bool] = False
    # The policy's own options: a frozen dataclass whose fields are the options (see
    # :mod:`promptopt.policies.options`); ``promptopt search`` makes a flag of each, and
    # ``SearchConfig.policy_options`` is checked against it. The policy reads them as
    # ``self.options``.
    Options: ClassVar[type[PolicyOptions]] = PolicyOptions
    # Where the policy spends a budget preset differently: preset name -> the
    # SearchConfig fields it sets otherwise (e.g. OPRO's several small steps).
    presets: ClassVar[Mapping[str, Mapping[str, Any]]] = {}

    def __init__(self, base: Candidate, proposer: Proposer, settings: PolicySettings) -> None:
        self.base = base
        self.proposer = proposer
        self.settings = settings
        self.options: PolicyOptions = self.read_options(settings.options)
        self.standings: dict[str, Standing] = {}
        self.candidates: dict[str, Candidate] = {base.hash: base}

    @abstractmethod
    def ask(self) -> list[Proposal]: ...

    def tell(self, standings: Mapping[str, Standing]) -> None:
        for candidate, standing in standings.items():
            previous = self.standings.get(candidate)
            if previous is None or standing.n >= previous.n:
                self.standings[candidate] = standing

    def should_prune(self, standing: Standing) -> bool:
        """Called after every racing stage; True drops the candidate at once (on top of
        successive halving). Policies with their own pruner (Optuna) override this."""
        return False

    def describe(self) -> dict[str, Any]:
        """What the policy learned, for the run summary (empty when nothing to say)."""
        return {}

    def close(self) -> None:
        """Release what the policy holds (connections, files). The controller calls it
        once when the search ends, however it ends, after :meth:`describe`."""
        return None

    @classmethod
    def bootstraps_in(cls, config: SearchConfig, task: Task) -> bool:
        """Whether the search ``config`` describes bootstraps demos (and would ask a
        ``demo_teacher``): by default, :attr:`bootstraps`."""
        return cls.bootstraps

    @classmethod
    def read_options(cls, values: PolicyOptions | Mapping[str, Any] | None) -> PolicyOptions:
        """``values`` checked against :attr:`Options` (ConfigError naming the option if not)."""
        return read_options(getattr(cls, "name", cls.__name__), cls.Options, values)

    @classmethod
    def options_of(cls, config: SearchConfig) -> Any:
        """The policy's options of a configured search (for :meth:`estimate`)."""
        return cls.read_options(config.policy_options)

    # Whether ``rounds`` and ``n_proposals`` size the search (so that the estimate is an
    # upper bound they decide); DSPy's optimizers size themselves.
    sized_by_rounds: ClassVar[bool] = True

    @classmethod
    def estimate(cls, config: SearchConfig, task: Task) -> dict[str, Any]:
        """An upper bound of the calls and tokens a search with this policy makes
        (``promptopt search --dry-run``), as the dict of
        :func:`promptopt.policies.estimates.instruction_estimate`. The default is that one: APE's
        propose-then-race rounds; a policy that spends differently says so (OPRO, reflect...)."""
        from promptopt.policies.estimates import instruction_estimate

        return instruction_estimate(config, task)

    def with_text(self, text: str) -> Candidate:
        """The base candidate with the searched slot replaced by ``text``."""
        slot = self.proposer.slot
        changes: dict[str, object] = {slot: text}
        if slot == "cot_trigger" and self.base.cot_mode == "none":
            changes["cot_mode"] = "zero_shot"
        candidate = dataclasses.replace(self.base, **changes)  # type: ignore[arg-type]
        self.candidates[candidate.hash] = candidate
        return candidate

    def text_of(self, candidate: Candidate) -> str:
        return str(getattr(candidate, self.proposer.slot))

    def best(self, k: int) -> list[Candidate]:
        return [self.candidates[s.candidate] for s in rank(list(self.standings.values()))[:k]]


@dataclass(frozen=True)
class SpaceOptions(PolicyOptions):
    """The options of the policies over a search space."""

    cost_penalty: float = option(
        0.0,
        "reinforce/tpe: reward = dev score - this x (calls per example - 1), to favour cheaper prompts.",
        min=0.0,
        show_default=True,
    )


class SpacePolicy(Policy):
    """A policy over a declarative :class:`~promptopt.spaces.SearchSpace`.

    Each round it proposes ``n_proposals`` points of the space (round 0 adds the starting
    prompt), for ``rounds + 1`` rounds; subclasses decide how points are chosen
    (:meth:`next_points`) and what they learn from the race (:meth:`learn`).

    The instruction is an index into a pool of fixed capacity: the starting prompt's
    instruction, the space's seeds, then ``grow.max`` slots that the proposer fills the
    first time a point picks them (APE forward generation or OPRO from the history), so
    the pool grows during the search while the categories a sampler sees never change.
    Bootstrapped demos are computed once, on first use, through the task backend (or the
    teacher's, ``SearchConfig.demo_teacher``).
    """

    bootstraps = True

    needs_space = True
    Options = SpaceOptions
    options: SpaceOptions

    def __init__(self, base: Candidate, proposer: Proposer, settings: PolicySettings) -> None:
        super().__init__(base, proposer, settings)
        if settings.space is None:
            raise ConfigError(f"policy {self.name!r} needs a search space (--space NAME|FILE)")
        self.space: SearchSpace = settings.space
        self._round = 0
        self.pool: list[str] = []
        self.capacity = 1
        self.proposer_kind = "ape"
        if "instruction" in self.space:
            dim = self.space["instruction"]
            seeds = ([base.instruction] if dim.include_base else []) + list(dim.choices)
            self.pool = list(dict.fromkeys(seeds))
            self.capacity = len(self.pool) + dim.grow
            self.proposer_kind = dim.proposer
        else:
            self.pool = [base.instruction]
        self.slot_origin: dict[int, str] = {i: "seed" for i in range(len(self.pool))}
        self.points: dict[str, Point] = {}
        self._batch: list[tuple[str, Point]] = []
        self._bootstrap: BootstrapReport | None = None
        self._demo_ids: tuple[list[str], list[str]] | None = None

    # A proposed point whose prompt was already raced (or is already in this round) costs
    # no model call (its results are reused; it may race further if it makes the cut now)
    # but takes a slot of the round: policies with redraw_repeats draw another, up to
    # MAX_REDRAWS times (after that the space is nearly exhausted). random does; tpe did
    # worse with it on the tests' fake space, and REINFORCE needs its samples unbiased.
    redraw_repeats: ClassVar[bool] = False

    # -- what subclasses implement
    @abstractmethod
    def next_points(self, n: int) -> list[Point]:
        """``n`` points of the space to try next."""

    def redraw(self, index: int, point: Point, known: Standing | None) -> Point:
        """Another point for slot ``index`` of this round, instead of ``point``, whose
        prompt was raced already (``known``: its standing) or is a repeat within the round."""
        return self.next_points(1)[0]

    @abstractmethod
    def learn(self, batch: Sequence[tuple[Point, Standing]]) -> None:
        """What the last race said about each point proposed for it."""

    # -- the ask/tell loop
    def ask(self) -> list[Proposal]:
        if self._round > self.settings.rounds:
            return []
        round_index = self._round
        self._round += 1
        proposals = [Proposal(self.base, "seed")] if round_index == 0 else []
        seen = {p.candidate.hash for p in proposals}
        self._batch = []
        for index, point in enumerate(self.next_points(self.settings.n_proposals)):
            candidate = self.materialize(point)
            for _ in range(MAX_REDRAWS if self.redraw_repeats else 0):
                if candidate.hash not in self.standings and candidate.hash not in seen:
                    break
                point = self.redraw(index, point, self.standings.get(candidate.hash))
                candidate = self.materialize(point)
            self._batch.append((candidate.hash, point))
            self.points.setdefault(candidate.hash, point)
            if candidate.hash not in seen:
                seen.add(candidate.hash)
                proposals.append(Proposal(candidate, self.name))
        return proposals

    def tell(self, standings: Mapping[str, Standing]) -> None:
        super().tell(standings)
        batch = [(point, standings[h]) for h, point in self._batch if h in standings]
        self._batch = []
        if batch:
            self.learn(batch)

    def reward(self, point: Point, standing: Standing) -> float:
        """Minibatch score, minus the cost penalty per extra call per example."""
        if not self.options.cost_penalty:
            return standing.mean
        from promptopt.bias.costs import calls_per_example

        calls = calls_per_example(
            int(point.get("samples", self.base.samples)),
            bool(point.get("two_stage", self.base.two_stage)),
            int(point.get("permute", self.base.permute)),
            str(point.get("calibration", self.base.calibration)),
            bool(point.get("rescue", self.base.rescue)),
        )
        return standing.mean - self.options.cost_penalty * (calls - 1)

    # -- points -> candidates
    def dimension_options(self, dimension: Dimension) -> list[Any]:
        """The discrete choices of a dimension (pool slots for the instruction)."""
        if dimension.kind == "pool":
            return list(range(self.capacity))
        return dimension.options()

    def instruction(self, index: int) -> str:
        """The text of pool slot ``index``, asking the proposer to fill empty slots."""
        while len(self.pool) <= index:
            slot = len(self.pool)
            texts: list[str] = []
            if self.proposer_kind == "opro":
                history = [(self.candidates[h].instruction, s.mean) for h, s in self.standings.items()]
                texts = self.proposer.from_history(
                    history or [(self.base.instruction, 0.0)], 1, step=1000 + slot
                )
            else:
                texts = self.proposer.from_demos(1, round_index=1000 + slot)
            fresh = [t for t in texts if t not in self.pool]
            if not fresh:  # a repeated proposal: vary the best instruction instead
                best = self.best(1)
                source = best[0].instruction if best else self.pool[0]
                fresh = [
                    t
                    for t in self.proposer.paraphrase(source, 1, round_index=1000 + slot)
                    if t not in self.pool
                ]
            self.pool.append(fresh[0] if fresh else self.pool[0])
            self.slot_origin[slot] = self.proposer_kind if fresh else "duplicate"
        return self.pool[index]

    def bootstrapped(self, k: int) -> DemoSolutions:
        if self._bootstrap is None:
            from promptopt.bootstrap import bootstrap_demos

            task, backend = self.settings.task, self.settings.demo_backend
            if task is None or backend is None:
                raise ConfigError("bootstrapped demos need the task and its model")
            from promptopt.spaces import bootstrap_count

            most = max(k, bootstrap_count(self.space))
            self._bootstrap = bootstrap_demos(
                task, backend, k=most, seed=self.settings.seed, instruction=self.base.instruction or None,
                answer_format=self.base.answer_format or None,
            )  # fmt: skip
        return self._bootstrap.demos

    def materialize(self, point: Point) -> Candidate:
        from promptopt.spaces import build_candidate

        if "instruction" in point:
            self.instruction(int(point["instruction"]))
        task = self.settings.task
        if self._demo_ids is None:
            self._demo_ids = (
                ([e.id for e in task.examples("train")], [e.id for e in task.cot_demos]) if task else ([], [])
            )
        pool_ids, fixed = self._demo_ids
        candidate = build_candidate(
            self.space, point, self.base, pool=self.pool, demo_pool_ids=pool_ids, fixed_demo_ids=fixed,
            bootstrapped=self.bootstrapped if task is not None else None,
        )  # fmt: skip
        self.candidates[candidate.hash] = candidate
        return candidate

    def describe_point(self, point: Point) -> dict[str, Any]:
        from promptopt.spaces import describe_point

        return describe_point(self.space, point, self.pool)

    @classmethod
    def estimate(cls, config: SearchConfig, task: Task) -> dict[str, Any]:
        from promptopt.policies.estimates import space_estimate

        return space_estimate(config, task)

    @classmethod
    def bootstraps_in(cls, config: SearchConfig, task: Task) -> bool:
        """Only when the space offers bootstrapped demos."""
        from promptopt.policies.estimates import resolve_space, space_bootstraps

        return space_bootstraps(resolve_space(config, task))

    def describe(self) -> dict[str, Any]:
        return {
            "space": self.space.name,
            "instruction_pool": [
                {"slot": i, "origin": self.slot_origin.get(i, "seed"), "text": text}
                for i, text in enumerate(self.pool)
            ],
            "pool_capacity": self.capacity,
            # demos bootstrapped (right answers kept) of the pool items asked, when the space has any
            **(
                {"bootstrapped": self._bootstrap.correct, "bootstrap_tried": self._bootstrap.tried}
                if self._bootstrap is not None
                else {}
            ),
        }


POLICIES: dict[str, type[Policy]] = {}


def register_policy(name: str) -> Callable[[type[Policy]], type[Policy]]:
    """Class decorator: make a policy choosable by name (``--policy NAME``)."""

    def decorate(cls: type[Policy]) -> type[Policy]:
        cls.name = name
        POLICIES[name] = cls
        return cls

    return decorate


def get_policy(name: str) -> type[Policy]:
    try:
        return POLICIES[name]
    except KeyError:
        close = difflib.get_close_matches(name, list(POLICIES), n=2)
        hint = (
            f"did you mean {' or '.join(close)}?" if close else f"choose one of {', '.join(sorted(POLICIES))}"
        )
        raise ConfigError(f"unknown policy {name!r}", hint=hint) from None
