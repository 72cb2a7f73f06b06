"""Search spaces as data: which parts of a prompt a policy may change, and how.

A space is a YAML file with a list of named *dimensions*. Each name is a part of a
:class:`~promptopt.types.Candidate` (``instruction``, ``cot_mode``, ``n_demos``, ...;
see :data:`DIMENSIONS`), each has a type (``categorical``, ``integer``, ``float``, or
``pool`` for the instruction) and may be *conditional*: ``when: {cot_mode: [zero_shot,
few_shot]}`` means the dimension exists only when its parent takes one of those values
(``when: {n_demos: {min: 1}}`` for a numeric parent). An inactive dimension keeps the
starting prompt's value (or its own ``default``).

The instruction is a *pool*: the starting prompt's instruction, the seed instructions of
the file, and ``grow.max`` more slots that the proposer (APE forward generation or OPRO)
fills the first time a policy picks them. Policies see the pool as indices into a list
of fixed length, as DSPy's MIPROv2 does, so a Bayesian sampler's categories never change
while the pool grows during the search.

A file may start from another: ``extends: gsm8k`` (a name, or a path relative to the
file) inherits its dimensions; each dimension the file lists replaces the inherited one,
``null`` removes one, and new ones are added after.

Built-in spaces ship inside the package (``promptopt/search_spaces/*.yaml``) so that they
travel with the wheel; ``load_space(NAME)`` also looks in ``./search_spaces/`` and in the
folders of ``$PROMPTOPT_SPACE_PATH`` first, so a user's file of the same name wins.

:func:`load_space` validates everything and reports *every* problem at once, each with
its path in the file and its line: ``gsm8k.yaml:31: dimensions.temperature.low:
expected a number, got 'warm'``.
"""

from __future__ import annotations

import dataclasses
import difflib
import math
import os
import random
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any

import yaml

from promptopt.bias.checks import CALIBRATIONS
from promptopt.errors import ConfigError
from promptopt.types import COT_MODES, Candidate

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
    "max_tokens": _Rule(("integer", "categorical"), "int", minimum=1, doc="most tokens per answer"),
    "permute": _Rule(("integer", "categorical"), "int", minimum=1, doc="option orderings voted over"),
    "calibration": _Rule(("categorical",), "str", CALIBRATIONS, doc="none | contextual | batch | position"),
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

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "version": SPACE_VERSION,
            "description": self.description,
            "dimensions": {d.name: d.to_dict() for d in self.dimensions},
            "order": list(self.names),
        }


# ----------------------------------------------------------------------------- loading


def builtin_dir() -> Path:
    return Path(str(resources.files("promptopt") / "search_spaces"))


def _search_dirs() -> list[Path]:
    dirs = [Path.cwd() / "search_spaces"]
    dirs += [Path(p) for p in os.environ.get("PROMPTOPT_SPACE_PATH", "").split(os.pathsep) if p]
    dirs.append(builtin_dir())
    return dirs


def _space_files() -> Iterator[Path]:
    """Every space file, user folders first, then the built-in ones (a name may recur)."""
    for folder in _search_dirs():
        if folder.is_dir():
            yield from sorted(folder.glob("*.yaml"))


def _is_path(ref: str) -> bool:
    """Whether ``ref`` names a file rather than a space."""
    return Path(ref).suffix in (".yaml", ".yml") or os.sep in ref


def list_spaces() -> dict[str, Path]:
    """Space names and their files: user folders first, then the built-in ones."""
    found: dict[str, Path] = {}
    for path in _space_files():
        found.setdefault(path.stem, path)
    return found


def resolve_space(ref: str) -> Path:
    """The file for ``ref``: a path to a YAML file, or a space name (see :func:`list_spaces`)."""
    path = Path(ref).expanduser()
    if _is_path(ref):
        if not path.is_file():
            raise ConfigError(f"search space file {ref!r} not found")
        return path
    known = list_spaces()
    if ref in known:
        return known[ref]
    close = difflib.get_close_matches(ref, list(known), n=2)
    hint = (
        f"did you mean {' or '.join(close)}?"
        if close
        else f"choose one of {', '.join(sorted(known))} or give a path"
    )
    raise ConfigError(f"unknown search space {ref!r}", hint=hint)


def load_space(ref: str | Path | Mapping[str, Any] | SearchSpace) -> SearchSpace:
    """A validated :class:`SearchSpace` from a name, a file, or an already parsed mapping
    (as stored with a run). Raises :class:`SpaceError` listing every problem."""
    if isinstance(ref, SearchSpace):
        return ref
    if isinstance(ref, Mapping):
        space, problems = parse_space(ref, source="<mapping>")
        if problems:
            raise SpaceError("<mapping>", problems)
        assert space is not None
        return space
    path = resolve_space(str(ref))
    space, problems = check_file(path)
    if problems:
        raise SpaceError(path.name, problems)
    assert space is not None
    return space


def check_file(path: Path) -> tuple[SearchSpace | None, list[str]]:
    """Parse and validate one file (and the spaces it ``extends``); returns the space (if
    valid) and every problem."""
    data, lines, problems = _read_space(path, ())
    if problems:
        return None, problems
    return parse_space(data, source=path.name, lines=lines)


def _read_space(path: Path, chain: tuple[Path, ...]) -> tuple[Any, dict[tuple[str, ...], int], list[str]]:
    """The YAML document of ``path`` with its ``extends`` resolved (recursively), the line
    of each path in it, and the problems found on the way (reading, YAML, inheritance).
    ``chain``: the files that extend this one, to catch a cycle."""
    label = path.name
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as e:
        return None, {}, [f"{label}: cannot read: {e.strerror or e}"]
    try:
        data = yaml.safe_load(text)
        lines = _line_map(text)
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        where = f"{label}:{mark.line + 1}" if mark is not None else label
        problem = getattr(e, "problem", None) or str(e)
        return None, {}, [f"{where}: not valid YAML: {problem}"]
    if isinstance(data, Mapping) and "extends" in data:
        return _inherit(data, lines, label, path, chain)
    return data, lines, []


def _parent_file(ref: str, path: Path | None, chain: tuple[Path, ...]) -> Path:
    """The file that ``extends: ref`` names, for the file ``path`` (None: a mapping). A
    path is relative to the extending file's folder; a name is looked up like
    ``--space NAME``, skipping the files of the chain, so that
    ``search_spaces/gsm8k.yaml`` may extend the built-in ``gsm8k``."""
    here = path.parent if path is not None else Path.cwd()
    seen = {p.resolve() for p in chain} | ({path.resolve()} if path is not None else set())
    if _is_path(ref):
        target = Path(ref).expanduser()
        target = target if target.is_absolute() else here / target
        if not target.is_file():
            raise ConfigError(f"search space file {str(target)!r} not found")
        return target
    files = list(_space_files())
    for candidate in files:
        if candidate.stem == ref and candidate.resolve() not in seen:
            return candidate
    close = difflib.get_close_matches(ref, sorted({f.stem for f in files} - {ref}), n=2)
    hint = f"; did you mean {' or '.join(close)}?" if close else ""
    raise ConfigError(f"unknown search space {ref!r}{hint}")


def _inherit(
    data: Mapping[str, Any],
    lines: dict[tuple[str, ...], int],
    label: str,
    path: Path | None,
    chain: tuple[Path, ...],
) -> tuple[Any, dict[tuple[str, ...], int], list[str]]:
    """``data`` on top of the space it ``extends``: a dimension it lists replaces the
    inherited one of that name in place (``null`` removes it), new ones come after,
    and ``description`` is inherited unless given. ``name`` is never inherited (it
    defaults to the file's name), nor is ``order``."""
    problems = _Problems(label, lines)
    ref = data["extends"]
    if not isinstance(ref, str) or not ref.strip():
        problems.add(("extends",), f"expected the name or path of a search space, got {_describe(ref)}")
        return None, {}, problems.items
    try:
        parent_path = _parent_file(ref.strip(), path, chain)
    except ConfigError as e:
        problems.add(("extends",), e.message)
        return None, {}, problems.items
    trail = chain + ((path,) if path is not None else ())
    if parent_path.resolve() in {p.resolve() for p in trail}:
        names = " -> ".join(p.name for p in (*trail, parent_path))
        problems.add(("extends",), f"spaces extend each other in a cycle: {names}")
        return None, {}, problems.items
    parent, parent_lines, parent_problems = _read_space(parent_path, trail)
    if not parent_problems:
        parent_problems = parse_space(parent, source=parent_path.name, lines=parent_lines)[1]
    if parent_problems:
        problems.add(("extends",), f"the space it extends ({parent_path.name}) has problems:")
        return None, {}, problems.items + [f"  {p}" for p in parent_problems]
    own = data.get("dimensions", {})
    if not isinstance(own, Mapping):
        problems.add(
            ("dimensions",), f"expected a mapping of dimensions to add or replace, got {_describe(own)}"
        )
        return None, {}, problems.items
    dims = dict(parent["dimensions"])
    inherited = set(dims)
    for name, spec in own.items():
        if spec is not None:
            dims[name] = spec
            inherited.discard(name)
        elif name in dims:
            del dims[name]
        else:
            problems.add(
                ("dimensions", str(name)),
                f"null removes an inherited dimension, but {parent_path.name} has no dimension {name!r}",
            )
    if problems.items:
        return None, {}, problems.sorted()
    merged = {k: v for k, v in data.items() if k not in ("extends", "dimensions")}
    merged.setdefault("description", parent.get("description", ""))
    merged["dimensions"] = dims
    at = lines.get(("extends",), 1)
    merged_lines = dict(lines)
    for name in inherited:  # a problem in an inherited dimension points at ``extends``
        merged_lines[("dimensions", str(name))] = at
    return merged, merged_lines, []


def _line_map(text: str) -> dict[tuple[str, ...], int]:
    """Path of keys -> 1-based line of its value, from the YAML node tree."""
    out: dict[tuple[str, ...], int] = {}

    def walk(node: yaml.Node, path: tuple[str, ...]) -> None:
        out.setdefault(path, node.start_mark.line + 1)
        if isinstance(node, yaml.MappingNode):
            for key, value in node.value:
                name = str(key.value)
                out[path + (name,)] = key.start_mark.line + 1
                walk(value, path + (name,))
                out[path + (name,)] = key.start_mark.line + 1
        elif isinstance(node, yaml.SequenceNode):
            for i, item in enumerate(node.value):
                walk(item, path + (str(i),))

    root = yaml.compose(text)
    if root is not None:
        walk(root, ())
    return out


class _Problems:
    def __init__(self, source: str, lines: Mapping[tuple[str, ...], int]) -> None:
        self.source = source
        self.lines = lines
        self.items: list[str] = []
        self._lines: list[int] = []

    def add(self, path: Sequence[str | int], message: str) -> None:
        keys = tuple(str(p) for p in path)
        line = None
        for cut in range(len(keys), -1, -1):
            line = self.lines.get(keys[:cut])
            if line is not None:
                break
        where = f"{self.source}:{line}" if line is not None else self.source
        shown = ".".join(f"[{k}]" if k.isdigit() else k for k in keys).replace(".[", "[")
        self.items.append(f"{where}: {shown}: {message}" if shown else f"{where}: {message}")
        self._lines.append(line or 0)

    def sorted(self) -> list[str]:
        """Problems in the order of the file (stable for problems on one line)."""
        return [
            item for _, item in sorted(zip(self._lines, self.items, strict=True), key=lambda pair: pair[0])
        ]


def _describe(value: Any) -> str:
    return "nothing" if value is None else f"{type(value).__name__} {value!r}"


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _check_value(rule: _Rule, value: Any, path: Sequence[str | int], problems: _Problems) -> bool:
    if rule.value == "str" and not isinstance(value, str):
        problems.add(path, f"expected a string, got {_describe(value)}")
        return False
    if rule.value == "int" and not (isinstance(value, int) and not isinstance(value, bool)):
        problems.add(path, f"expected an integer, got {_describe(value)}")
        return False
    if rule.value == "number" and not _is_number(value):
        problems.add(path, f"expected a number, got {_describe(value)}")
        return False
    if rule.value == "bool" and not isinstance(value, bool):
        problems.add(path, f"expected true or false, got {_describe(value)}")
        return False
    if rule.allowed and value not in rule.allowed:
        problems.add(path, f"{value!r} is not one of {', '.join(map(str, rule.allowed))}")
        return False
    if rule.minimum is not None and _is_number(value) and value < rule.minimum:
        problems.add(path, f"must be at least {rule.minimum:g}, got {value!r}")
        return False
    return True


def parse_space(
    data: Any, *, source: str = "<mapping>", lines: Mapping[tuple[str, ...], int] | None = None
) -> tuple[SearchSpace | None, list[str]]:
    """Validate a parsed YAML document; returns the space (None if invalid) and all problems."""
    if isinstance(data, Mapping) and "extends" in data:  # a mapping; a file's is resolved on reading
        data, lines, inherited = _inherit(data, dict(lines or {}), source, None, ())
        if inherited:
            return None, inherited
    problems = _Problems(source, lines or {})
    if not isinstance(data, Mapping):
        problems.add((), f"expected a mapping with 'name' and 'dimensions', got {_describe(data)}")
        return None, problems.items
    for key in sorted(set(data) - _TOP_KEYS, key=str):
        close = difflib.get_close_matches(str(key), list(_TOP_KEYS), n=1)
        problems.add(
            (key,),
            "unknown key"
            + (
                f"; did you mean {close[0]!r}?"
                if close
                else f"; expected some of {', '.join(sorted(_TOP_KEYS))}"
            ),
        )
    name = data.get("name", Path(source).stem)
    if not isinstance(name, str) or not name:
        problems.add(("name",), f"expected a non-empty string, got {_describe(name)}")
    version = data.get("version", SPACE_VERSION)
    if version != SPACE_VERSION:
        problems.add(("version",), f"this promptopt reads space version {SPACE_VERSION}, got {version!r}")
    description = data.get("description", "")
    if not isinstance(description, str):
        problems.add(("description",), f"expected a string, got {_describe(description)}")
    raw_dims = data.get("dimensions")
    if not isinstance(raw_dims, Mapping) or not raw_dims:
        problems.add(
            ("dimensions",), f"expected a non-empty mapping of dimensions, got {_describe(raw_dims)}"
        )
        return None, problems.items
    dims: dict[str, Dimension] = {}
    for dim_name, spec in raw_dims.items():
        dimension = _parse_dimension(str(dim_name), spec, problems)
        if dimension is not None:
            dims[dimension.name] = dimension
    _check_conditions(raw_dims, dims, problems)
    order = data.get("order")
    if order is not None:
        if not isinstance(order, list) or sorted(map(str, order)) != sorted(raw_dims):
            problems.add(("order",), "expected a list naming every dimension once")
        else:
            dims = {str(name): dims[str(name)] for name in order if str(name) in dims}
    if problems.items:
        return None, problems.sorted()
    ordered = _dependency_order(dims)
    return SearchSpace(str(name), tuple(ordered), str(description or ""), source), []


def _parse_dimension(name: str, spec: Any, problems: _Problems) -> Dimension | None:
    path: tuple[str, ...] = ("dimensions", name)
    rule = DIMENSIONS.get(name)
    if rule is None:
        close = difflib.get_close_matches(name, list(DIMENSIONS), n=1)
        hint = f"did you mean {close[0]!r}?" if close else f"expected one of {', '.join(DIMENSIONS)}"
        problems.add(path, f"unknown dimension; {hint}")
        return None
    if not isinstance(spec, Mapping):
        problems.add(path, f"expected a mapping with 'type', got {_describe(spec)}")
        return None
    kind = spec.get("type")
    if kind not in KINDS:
        problems.add(path + ("type",), f"expected one of {', '.join(rule.kinds)}, got {_describe(kind)}")
        return None
    if kind not in rule.kinds:
        problems.add(path + ("type",), f"{name} cannot be {kind}; expected {' or '.join(rule.kinds)}")
        return None
    before = len(problems.items)
    for key in sorted(set(spec) - _DIM_KEYS[kind], key=str):
        problems.add(
            path + (str(key),),
            f"unknown key for a {kind} dimension; expected some of {', '.join(sorted(_DIM_KEYS[kind]))}",
        )
    values: dict[str, Any] = {"name": name, "kind": kind}
    if kind == "categorical":
        choices = spec.get("choices")
        if not isinstance(choices, list) or not choices:
            problems.add(path + ("choices",), f"expected a non-empty list, got {_describe(choices)}")
        else:
            for i, choice in enumerate(choices):
                _check_value(rule, choice, path + ("choices", str(i)), problems)
            if len({repr(c) for c in choices}) != len(choices):
                problems.add(path + ("choices",), "choices repeat a value")
            values["choices"] = tuple(choices)
    elif kind in ("integer", "float"):
        number_rule = dataclasses.replace(rule, value="int" if kind == "integer" else "number")
        for bound in ("low", "high"):
            if bound not in spec:
                problems.add(path + (bound,), "missing; expected a number")
            elif _check_value(number_rule, spec[bound], path + (bound,), problems):
                values[bound] = spec[bound]
        if "low" in values and "high" in values and values["low"] > values["high"]:
            problems.add(path + ("high",), f"must not be below low ({values['low']}), got {values['high']}")
        if "step" in spec:
            step = spec["step"]
            if not _is_number(step) or step <= 0 or (kind == "integer" and not isinstance(step, int)):
                problems.add(
                    path + ("step",),
                    f"expected a positive {'integer' if kind == 'integer' else 'number'}, got {_describe(step)}",
                )
            else:
                values["step"] = step
        if "log" in spec:
            if not isinstance(spec["log"], bool):
                problems.add(path + ("log",), f"expected true or false, got {_describe(spec['log'])}")
            elif spec["log"] and values.get("low", 1) <= 0:
                problems.add(path + ("log",), "a log scale needs low > 0")
            else:
                values["log"] = spec["log"]
    else:  # pool
        seeds = spec.get("seeds", [])
        if not isinstance(seeds, list):
            problems.add(path + ("seeds",), f"expected a list of instructions, got {_describe(seeds)}")
            seeds = []
        for i, seed in enumerate(seeds):
            if not isinstance(seed, str) or not seed.strip():
                problems.add(path + ("seeds", str(i)), f"expected a non-empty string, got {_describe(seed)}")
        values["choices"] = tuple(s for s in seeds if isinstance(s, str))
        include_base = spec.get("include_base", True)
        if not isinstance(include_base, bool):
            problems.add(path + ("include_base",), f"expected true or false, got {_describe(include_base)}")
        values["include_base"] = bool(include_base)
        grow = spec.get("grow", {})
        if not isinstance(grow, Mapping):
            problems.add(
                path + ("grow",), f"expected a mapping like {{proposer: ape, max: 6}}, got {_describe(grow)}"
            )
            grow = {}
        for key in sorted(set(grow) - {"proposer", "max"}, key=str):
            problems.add(path + ("grow", str(key)), "unknown key; expected proposer or max")
        proposer = grow.get("proposer", "ape")
        if proposer not in PROPOSERS:
            problems.add(
                path + ("grow", "proposer"),
                f"expected one of {', '.join(PROPOSERS)}, got {_describe(proposer)}",
            )
        size = grow.get("max", 0)
        if not isinstance(size, int) or isinstance(size, bool) or size < 0:
            problems.add(path + ("grow", "max"), f"expected a whole number >= 0, got {_describe(size)}")
            size = 0
        values.update(proposer=proposer, grow=size)
        if not values["choices"] and not values["include_base"] and size == 0:
            problems.add(path, "the pool is empty: give seeds, include_base: true or grow.max > 0")
    if (
        "default" in spec
        and kind != "pool"
        and _check_value(rule, spec["default"], path + ("default",), problems)
    ):
        values["default"] = spec["default"]
    if len(problems.items) > before:
        return None
    return Dimension(**values)  # ``when`` is checked once every dimension is known


def _check_conditions(raw: Mapping[str, Any], dims: dict[str, Dimension], problems: _Problems) -> None:
    # Every dimension's conditions are checked, even one whose own fields have problems,
    # so that a single run of `promptopt validate` lists them all.
    for raw_name, spec in raw.items():
        name = str(raw_name)
        when = spec.get("when") if isinstance(spec, Mapping) else None
        if when is None:
            continue
        path: tuple[str, ...] = ("dimensions", name, "when")
        if not isinstance(when, Mapping) or not when:
            problems.add(path, f"expected a mapping like {{cot_mode: [zero_shot]}}, got {_describe(when)}")
            continue
        conditions = []
        for parent, expected in when.items():
            here = path + (str(parent),)
            if parent == name:
                problems.add(here, "a dimension cannot depend on itself")
                continue
            if parent not in raw:
                close = difflib.get_close_matches(str(parent), [str(k) for k in raw], n=1)
                problems.add(
                    here,
                    f"depends on {parent!r}, which is not a dimension of this space"
                    + (f"; did you mean {close[0]!r}?" if close else ""),
                )
                continue
            parent_dim = dims.get(str(parent))
            condition = _parse_condition(str(parent), expected, parent_dim, here, problems)
            if condition is not None:
                conditions.append(condition)
        if name in dims:
            dims[name] = dataclasses.replace(dims[name], when=tuple(conditions))
    # cycles
    state: dict[str, int] = {}

    def visit(name: str, trail: list[str]) -> None:
        if state.get(name) == 2 or name not in dims:
            return
        if state.get(name) == 1:
            cycle = trail[trail.index(name) :] + [name]
            problems.add(("dimensions", name, "when"), f"conditions form a cycle: {' -> '.join(cycle)}")
            return
        state[name] = 1
        for parent in dims[name].parents:
            visit(parent, trail + [name])
        state[name] = 2

    for name in dims:
        visit(name, [])


def _parse_condition(
    parent: str, expected: Any, parent_dim: Dimension | None, path: tuple[str, ...], problems: _Problems
) -> Condition | None:
    if isinstance(expected, Mapping):
        extra = set(expected) - {"min", "max"}
        if extra or not expected:
            problems.add(path, f"expected {{min: N}} and/or {{max: N}}, got {_describe(dict(expected))}")
            return None
        for key in ("min", "max"):
            if key in expected and not _is_number(expected[key]):
                problems.add(path + (key,), f"expected a number, got {_describe(expected[key])}")
                return None
        if (
            parent_dim is not None
            and parent_dim.kind in ("categorical", "pool")
            and not all(_is_number(c) for c in parent_dim.choices)
        ):
            problems.add(path, f"{parent} is not numeric; list the values it must take instead")
            return None
        return Condition(parent, low=expected.get("min"), high=expected.get("max"))
    values = tuple(expected) if isinstance(expected, list) else (expected,)
    if not values:
        problems.add(path, "expected at least one value")
        return None
    if parent_dim is not None:
        if parent_dim.kind == "categorical":
            missing = [v for v in values if v not in parent_dim.choices]
            if missing:
                problems.add(
                    path,
                    f"{', '.join(map(repr, missing))} is not a choice of {parent} ({', '.join(map(repr, parent_dim.choices))})",
                )
                return None
        elif parent_dim.kind == "pool":
            problems.add(path, "conditions on the instruction pool are not supported")
            return None
        else:
            assert parent_dim.low is not None and parent_dim.high is not None
            bad = [v for v in values if not _is_number(v) or not parent_dim.low <= v <= parent_dim.high]
            if bad:
                problems.add(
                    path,
                    f"{', '.join(map(repr, bad))} is outside {parent}'s range {parent_dim.low}..{parent_dim.high}",
                )
                return None
    return Condition(parent, values=values)


def _dependency_order(dims: Mapping[str, Dimension]) -> list[Dimension]:
    """Parents before children; otherwise the file's order (stable, so seeded sampling
    does not depend on anything but the file)."""
    placed: list[str] = []
    remaining = list(dims)
    while remaining:
        for name in remaining:
            if all(p in placed for p in dims[name].parents):
                placed.append(name)
                remaining.remove(name)
                break
        else:  # pragma: no cover - cycles are reported before
            raise ConfigError(f"cyclic conditions among {', '.join(remaining)}")
    return [dims[n] for n in placed]


# ------------------------------------------------------------------- point -> Candidate


@dataclass(frozen=True)
class DemoSolutions:
    """Bootstrapped demos: ids of train items and the model's own worked solutions."""

    demo_ids: tuple[str, ...]
    solutions: tuple[tuple[str, str], ...]


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
    gives up to ``k`` bootstrapped demos. Deterministic: the same point gives the same
    candidate (random demo sets are seeded by ``demo_seed``)."""
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
