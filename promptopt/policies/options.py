"""A policy's own options: a frozen dataclass the policy class names as ``Options``.

Each field is one option: its type (``int``, ``float``, ``bool``, or one of them ``| None``),
its default, and with :func:`option` its help text and its range. From that one
declaration :class:`~promptopt.search_config.SearchConfig` checks the values it is given
(``policy_options``), ``promptopt search`` builds a flag per option (``--minibatch`` for
``minibatch``), and the policy reads them typed (``self.options.minibatch``). A policy
with options of its own adds a check across fields by overriding
:meth:`PolicyOptions.validate`.
"""

from __future__ import annotations

import dataclasses
import types
import typing
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from promptopt.errors import ConfigError


@dataclass(frozen=True)
class PolicyOptions:
    """The options of a policy that has none; the base of those that have some."""

    def validate(self) -> None:
        """Raise :class:`~promptopt.errors.ConfigError` when the values do not go together
        (each value is already of its type and in its range when this is called)."""
        return None


def option(
    default: Any,
    help: str,  # noqa: A002 - the name click uses
    *,
    min: float | None = None,  # noqa: A002
    max: float | None = None,  # noqa: A002
    min_open: bool = False,
    show_default: bool = False,
) -> Any:
    """One option of a policy: a dataclass field with its help and its range.

    ``min``/``max`` bound a number (``min_open``: above ``min``, not at it);
    ``show_default`` prints the default in ``promptopt search --help``."""
    metadata = {"help": help, "min": min, "max": max, "min_open": min_open, "show_default": show_default}
    return dataclasses.field(default=default, metadata=metadata)


_KINDS = {int: "an integer", float: "a number", bool: "true or false"}


@dataclass(frozen=True)
class OptionSpec:
    """One option as the CLI and the checks see it."""

    name: str
    kind: type  # int, float or bool
    optional: bool  # None is accepted (the policy's own choice)
    default: Any
    help: str
    min: float | None = None
    max: float | None = None
    min_open: bool = False
    show_default: bool = False

    @property
    def flag(self) -> str:
        return "--" + self.name.replace("_", "-")

    def accepts(self) -> str:
        """What the option takes, in words: ``an integer >= 1``, ``a number in (0, 1]``."""
        text = _KINDS[self.kind]
        if self.min is not None and self.max is not None:
            text += f" in {'(' if self.min_open else '['}{self.min:g}, {self.max:g}]"
        elif self.min is not None:
            text += f" {'>' if self.min_open else '>='} {self.min:g}"
        elif self.max is not None:
            text += f" <= {self.max:g}"
        return text + (" or None" if self.optional else "")

    def check(self, value: Any) -> Any:
        """``value`` as the option's type; ValueError when it is not one it accepts."""
        if value is None:
            if self.optional:
                return None
            raise ValueError(value)
        if self.kind is bool:
            if not isinstance(value, bool):
                raise ValueError(value)
            return value
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise ValueError(value)
        if self.kind is int:
            if isinstance(value, float) and not value.is_integer():
                raise ValueError(value)
            value = int(value)
        else:
            value = float(value)
        low_ok = self.min is None or (value > self.min if self.min_open else value >= self.min)
        if not low_ok or (self.max is not None and value > self.max):
            raise ValueError(value)
        return value


def option_specs(options_type: type[PolicyOptions]) -> list[OptionSpec]:
    """The options a policy's ``Options`` dataclass declares, in their order."""
    hints = typing.get_type_hints(options_type)
    specs = []
    for f in dataclasses.fields(options_type):
        kind, optional = _kind_of(hints[f.name], f"{options_type.__name__}.{f.name}")
        meta = f.metadata
        specs.append(
            OptionSpec(
                f.name,
                kind,
                optional,
                f.default,
                str(meta.get("help", "")),
                meta.get("min"),
                meta.get("max"),
                bool(meta.get("min_open", False)),
                bool(meta.get("show_default", False)),
            )  # fmt: skip
        )
    return specs


def _kind_of(hint: Any, where: str) -> tuple[type, bool]:
    args = typing.get_args(hint)
    if typing.get_origin(hint) in (typing.Union, types.UnionType) and type(None) in args:
        rest = [a for a in args if a is not type(None)]
        if len(rest) == 1 and rest[0] in _KINDS:
            return rest[0], True
    elif hint in _KINDS:
        return hint, False
    raise TypeError(f"policy option {where}: type {hint!r} is not int, float, bool or one of them | None")


def read_options(
    policy: str, options_type: type[PolicyOptions], values: PolicyOptions | Mapping[str, Any] | None
) -> PolicyOptions:
    """``values`` checked against the policy's options: its ``Options`` instance.

    An unknown option, a value of the wrong type or out of range, or values that
    :meth:`PolicyOptions.validate` refuses raise :class:`~promptopt.errors.ConfigError`
    naming the policy, the option and what it accepts."""
    if isinstance(values, options_type):
        values.validate()
        return values
    if isinstance(values, PolicyOptions):
        raise ConfigError(f"policy {policy!r} takes {options_type.__name__}, not {type(values).__name__}")
    specs = {s.name: s for s in option_specs(options_type)}
    checked: dict[str, Any] = {}
    for name, value in dict(values or {}).items():
        spec = specs.get(name)
        if spec is None:
            known = ", ".join(specs) if specs else "none"
            raise ConfigError(f"policy {policy!r} has no option {name!r}", hint=f"its options: {known}")
        try:
            checked[name] = spec.check(value)
        except ValueError:
            raise ConfigError(
                f"policy {policy!r}: option {name!r} takes {spec.accepts()}, not {value!r}"
            ) from None
    options = options_type(**checked)
    options.validate()
    return options


def options_dict(options: PolicyOptions) -> dict[str, Any]:
    """The values of ``options`` by name (what a run stores)."""
    return {f.name: getattr(options, f.name) for f in dataclasses.fields(options)}
