"""The flags of the policies' own options (``--minibatch``, ``--dspy-share``...), made from
their ``Options`` dataclasses (:mod:`promptopt.policies.options`), and the check that the
chosen policy has the ones given. A policy's new option is a new flag with no change here."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import click

from promptopt.policies.options import OptionSpec


def _specs() -> tuple[dict[str, OptionSpec], dict[str, list[str]]]:
    """Every registered policy's options by name, and which policies have each."""
    from promptopt.policies import POLICIES
    from promptopt.policies.options import option_specs

    specs: dict[str, OptionSpec] = {}
    owners: dict[str, list[str]] = {}
    for name, policy in sorted(POLICIES.items()):
        for spec in option_specs(policy.Options):
            if specs.setdefault(spec.name, spec) != spec:
                raise TypeError(f"policy option {spec.name!r} is declared twice, differently ({name})")
            owners.setdefault(spec.name, []).append(name)
    return specs, owners


def _flag(spec: OptionSpec) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    # The default is the option's own; only the flags given on the command line are passed on.
    if spec.kind is bool:
        decls = f"{spec.flag}/--no-{spec.flag[2:]}" if spec.default else spec.flag
        return click.option(decls, spec.name, is_flag=True, default=spec.default, help=spec.help)
    low, high = spec.min, spec.max
    kind: click.ParamType
    if spec.kind is int:
        kind = click.IntRange(
            None if low is None else int(low), None if high is None else int(high), min_open=spec.min_open
        )
    else:
        kind = click.FloatRange(low, high, min_open=spec.min_open)
    return click.option(
        spec.flag, spec.name, type=kind, default=spec.default, show_default=spec.show_default, help=spec.help
    )


def policy_option_flags(function: Callable[..., Any]) -> Callable[..., Any]:
    """Decorator: a click option for every option of the registered policies."""
    specs, _ = _specs()
    for spec in reversed(list(specs.values())):
        function = _flag(spec)(function)
    return function


def _who(owners: list[str]) -> str:
    if len(owners) == 1:
        return f"the {owners[0]} policy"
    prefix = owners[0][: owners[0].find("-") + 1]
    if prefix and all(o.startswith(prefix) for o in owners):
        return f"the {prefix}* policies"
    return f"the {', '.join(owners[:-1])} and {owners[-1]} policies"


def take_policy_options(ctx: click.Context, options: dict[str, Any], policy: str | None) -> dict[str, Any]:
    """Remove the policy option flags from ``options``; return those given on the command
    line by name. A flag of an option ``policy`` does not have is a usage error."""
    specs, owners = _specs()
    given: dict[str, Any] = {}
    for name, spec in specs.items():
        value = options.pop(name, None)
        if ctx.get_parameter_source(name) in (None, click.core.ParameterSource.DEFAULT):
            continue
        if policy is not None and policy not in owners[name]:
            raise click.UsageError(f"{spec.flag} is for {_who(owners[name])}, not {policy}")
        given[name] = value
    return given
