"""The search-space model: the known dimensions and their rules, conditions, dimensions
and :class:`SearchSpace`. See :mod:`promptopt.spaces`."""

from __future__ import annotations

import math
import random
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from promptopt.bias.checks import CALIBRATIONS
from promptopt.errors import ConfigError
from promptopt.types import COT_MODES

SPACE_VERSION = 1
KINDS = ("categorical", "integer", "float", "pool")
SELECTIONS = ("random", "fixed", "similar", "bootstrapped")
ORDERS = ("as_selected", "reversed", "shuffled")
PROPOSERS = ("ape", "opro")


@dataclass(frozen=True)
class _Rule:
    """What a known dimension may be: its allowed types and a check of one value."""

    kinds: tuple[str, ...]
    value: str  # "str", "int", "number", "bool"
    allowed: tuple[Any, ...] = ()
    minimum: float | None = None
    doc: str = ""


DIMENSIONS: dict[str, _Rule] = {
    "instruction": _Rule(("pool",), "str", doc="system instruction, a pool of texts"),
    "cot_mode": _Rule(("categorical",), "str", COT_MODES, doc="none | zero_shot | few_shot"),
    "cot_trigger": _Rule(("categorical",), "str", doc="chain-of-thought trigger phrase"),
    "n_demos": _Rule(("integer", "categorical"), "int", minimum=0, doc="number of demos"),
    "demo_selection": _Rule(("categorical",), "str", SELECTIONS, doc="how demos are chosen"),
    "demo_seed": _Rule(("integer", "categorical"), "int", minimum=0, doc="which random demo set"),
    "demo_order": _Rule(("categorical",), "str", ORDERS, doc="order of the chosen demos"),
    "answer_format": _Rule(("categorical",), "str", doc="answer-format line ('' for none)"),
    "samples": _Rule(("integer", "categorical"), "int", minimum=1, doc="self-consistency samples"),
    "temperature": _Rule(("float", "categorical"), "number", minimum=0.0, doc="sampling temperature"),
    "two_stage": _Rule(("categorical",), "bool", doc="two-stage answer extraction"),
    "rescue": _Rule(("categorical",), "bool", doc="ask for the answer where the reasoning gave none"),
    "max_tokens": _Rule(("integer", "categorical"), "int", minimum=1, doc="most tokens per answer"),
    "permute": _Rule(("integer", "categorical"), "int", minimum=1, doc="option orderings voted over"),
    "calibration": _Rule(
        ("categorical",), "str", CALIBRATIONS, doc="none | raw | contextual | batch | position"
    ),
}
# ``order`` (optional): the order dimensions are sampled in, parents first; by default the
# file's order. Written by ``to_dict`` because a run's stored copy is JSON with sorted keys.
_TOP_KEYS = {"name", "version", "description", "dimensions", "order", "extends"}
_DIM_KEYS = {
    "categorical": {"type", "choices", "when", "default", "doc"},
    "integer": {"type", "low", "high", "step", "when", "default", "doc"},
    "float": {"type", "low", "high", "step", "log", "when", "default", "doc"},
    "pool": {"type", "seeds", "include_base", "grow", "when", "doc"},
}


class SpaceError(ConfigError):
    """A search-space file with problems; ``problems`` lists each with its place."""

    def __init__(self, source: str, problems: Sequence[str]) -> None:
        count = f"{len(problems)} problem{'s' if len(problems) != 1 else ''}"
        super().__init__(
            f"search space {source} has {count}:\n" + "\n".join(f"  {p}" for p in problems),
            hint="fix each line above; `promptopt validate FILE` checks a file without running a search",
        )
        self.problems = list(problems)


@dataclass(frozen=True)
class Condition:
    """``parent`` takes one of ``values`` (categorical) or lies in ``[low, high]``."""

    parent: str
    values: tuple[Any, ...] = ()
    low: float | None = None
    high: float | None = None

    def holds(self, value: Any) -> bool:
        if self.values:
            return value in self.values
        if value is None or isinstance(value, str):
            return False
        return (self.low is None or value >= self.low) and (self.high is None or value <= self.high)

    def to_dict(self) -> Any:
        if self.values:
            return list(self.values)
        return {k: v for k, v in (("min", self.low), ("max", self.high)) if v is not None}


@dataclass(frozen=True)
class Dimension:
    """One searchable part of a prompt.

    ``choices`` for categorical dimensions; ``low``/``high`` (and ``step``, ``log``) for
    integer and float ones; for the instruction pool, ``choices`` holds the seed texts
    and ``grow`` the number of extra slots a proposer fills on demand."""

    name: str
    kind: str
    choices: tuple[Any, ...] = ()
    low: float | None = None
    high: float | None = None
    step: float | None = None
    log: bool = False
    when: tuple[Condition, ...] = ()
    default: Any = None
    include_base: bool = True
    grow: int = 0
    proposer: str = "ape"

    @property
    def parents(self) -> tuple[str, ...]:
        return tuple(c.parent for c in self.when)

    def options(self, bins: int = 5) -> list[Any]:
        """A finite list of this dimension's values (floats in ``bins`` levels; integers
        every ``step``), for policies over discrete choices."""
        if self.kind == "categorical":
            return list(self.choices)
        assert self.low is not None and self.high is not None
        if self.kind == "integer":
            step = int(self.step or 1)
            return list(range(int(self.low), int(self.high) + 1, step))
        if self.step:
            count = int(round((self.high - self.low) / self.step))
            return [round(self.low + i * self.step, 10) for i in range(count + 1)]
        if bins <= 1 or self.high == self.low:
            return [self.low]
        if self.log and self.low > 0:
            ratio = (self.high / self.low) ** (1 / (bins - 1))
            return [round(self.low * ratio**i, 10) for i in range(bins)]
        return [round(self.low + (self.high - self.low) * i / (bins - 1), 10) for i in range(bins)]

    def finite_options(self) -> list[Any] | None:
        """The values a space policy (tpe, random, reinforce) can give this dimension, at
        least as many as it can (tpe's stepped floats: the same grid, or fewer points where
        the range is not a multiple of the step, up to binary noise the candidate rounds
        off), or None when there is no finite list: a float without ``step`` is drawn from
        its whole range. The instruction pool gives its slot indices (the starting
        instruction, the seeds, then the ``grow`` slots the proposer fills once each): a
        fixed number of slots, however the pool grows during the search."""
        if self.kind == "pool":
            return list(range(int(self.include_base) + len(self.choices) + self.grow))
        if self.kind == "float" and not self.step:
            return None
        return self.options()

    def uniform(self, rng: random.Random) -> Any:
        """A value drawn uniformly (log-uniformly when ``log``) from this dimension."""
        if self.kind in ("categorical", "pool"):
            raise ValueError("draw categorical and pool dimensions by index")
        assert self.low is not None and self.high is not None
        if self.kind == "integer":
            return rng.choice(self.options())
        if self.step:
            return rng.choice(self.options())
        if self.log and self.low > 0:
            return round(math.exp(rng.uniform(math.log(self.low), math.log(self.high))), 6)
        return round(rng.uniform(self.low, self.high), 6)

    def to_dict(self) -> dict[str, Any]:
        data: dict[str, Any] = {"type": self.kind}
        if self.kind == "pool":
            data["seeds"] = list(self.choices)
            data["include_base"] = self.include_base
            data["grow"] = {"proposer": self.proposer, "max": self.grow}
        elif self.kind == "categorical":
            data["choices"] = list(self.choices)
        else:
            data.update({"low": self.low, "high": self.high})
            if self.step is not None:
                data["step"] = self.step
            if self.log:
                data["log"] = True
        if self.when:
            data["when"] = {c.parent: c.to_dict() for c in self.when}
        if self.default is not None:
            data["default"] = self.default
        return data


Point = Mapping[str, Any]
"""One configuration: dimension name -> value (the pool index for ``instruction``);
inactive dimensions are absent."""


@dataclass(frozen=True)
class SearchSpace:
    """A validated space; ``dimensions`` are in dependency order (parents first)."""

    name: str
    dimensions: tuple[Dimension, ...]
    description: str = ""
    source: str = "<mapping>"

    def __getitem__(self, name: str) -> Dimension:
        for dimension in self.dimensions:
            if dimension.name == name:
                return dimension
        raise KeyError(name)

    def __contains__(self, name: object) -> bool:
        return any(d.name == name for d in self.dimensions)

    @property
    def names(self) -> tuple[str, ...]:
        return tuple(d.name for d in self.dimensions)

    def is_active(self, dimension: Dimension, point: Point) -> bool:
        """Whether ``dimension`` exists given the values already chosen in ``point``."""
        return all(c.parent in point and c.holds(point[c.parent]) for c in dimension.when)

    def sample(self, choose: Callable[[Dimension], Any]) -> dict[str, Any]:
        """Build a point dimension by dimension (parents first), asking ``choose`` for
        each *active* dimension only."""
        point: dict[str, Any] = {}
        for dimension in self.dimensions:
            if self.is_active(dimension, point):
                point[dimension.name] = choose(dimension)
        return point

    def points(self, limit: int) -> list[dict[str, Any]] | None:
        """Every point :meth:`sample` can build (inactive dimensions absent), or None when
        they cannot be listed: a dimension without :meth:`Dimension.finite_options`, a
        condition on a float dimension (Optuna's stepped floats carry binary noise, so
        which side of a condition 0.6000000000000001 falls on cannot be read from the
        grid), or more than ``limit`` points."""
        floats = {d.name for d in self.dimensions if d.kind == "float"}
        points: list[dict[str, Any]] = [{}]
        for dimension in self.dimensions:
            values = dimension.finite_options()
            if not values or floats.intersection(dimension.parents):
                return None
            grown: list[dict[str, Any]] = []
            for point in points:
                if self.is_active(dimension, point):
                    grown.extend({**point, dimension.name: value} for value in values)
                else:
                    grown.append(point)
            if len(grown) > limit:
                return None
            points = grown
        return points

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "version": SPACE_VERSION,
            "description": self.description,
            "dimensions": {d.name: d.to_dict() for d in self.dimensions},
            "order": list(self.names),
        }
