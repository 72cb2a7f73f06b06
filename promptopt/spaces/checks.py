"""Checking a space document's parts: each dimension, its values and conditions, every
problem kept with its path in the file and its line. See :mod:`promptopt.spaces`."""

from __future__ import annotations

import dataclasses
import difflib
from collections.abc import Mapping, Sequence
from typing import Any

from promptopt.errors import ConfigError
from promptopt.spaces.model import (
    _DIM_KEYS,
    DIMENSIONS,
    KINDS,
    PROPOSERS,
    Condition,
    Dimension,
    _Rule,
)


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
