"""``promptopt validate FILE``: check a search-space file without running a search.

Exit 0 with a summary of its dimensions, or exit 2 with every problem, each with its
line and its path in the file."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import click


@click.command("validate")
@click.argument("file", metavar="FILE|NAME")
@click.option("--json", "as_json", is_flag=True, help="Print the parsed space (or the problems) as JSON.")
def validate_command(file: str, as_json: bool) -> None:
    """Check a search space (a YAML file, or the name of a built-in or ./search_spaces one).

    Every problem is listed at once, e.g. `gsm8k.yaml:31: dimensions.temperature.low:
    expected a number, got str 'warm'`; the exit code is 2 when there is any."""
    from promptopt.spaces import check_file, space_file

    path = space_file(file) if not Path(file).exists() else Path(file)
    space, problems = check_file(path)
    if problems or space is None:
        if as_json:
            click.echo(json.dumps({"file": str(path), "problems": problems}, indent=2))
        else:
            click.secho(
                f"{path}: {len(problems)} problem{'s' if len(problems) != 1 else ''}", fg="red", err=True
            )
            for problem in problems:
                click.echo(f"  {problem}", err=True)
        raise SystemExit(2)
    if as_json:
        click.echo(json.dumps({"file": str(path), "space": space.to_dict()}, indent=2))
        return
    click.echo(f"{path}: valid search space {space.name!r} with {len(space.dimensions)} dimensions")
    for dimension in space.dimensions:
        if dimension.kind == "pool":
            what = (
                f"pool of {len(dimension.choices)} seeds + {dimension.grow} proposed ({dimension.proposer})"
            )
        elif dimension.kind == "categorical":
            what = f"{len(dimension.choices)} choices: " + ", ".join(repr(c) for c in dimension.choices)
            what = what if len(what) <= 90 else what[:89] + "…"
        else:
            what = f"{dimension.kind} {dimension.low}..{dimension.high}" + (
                f" step {dimension.step}" if dimension.step else ""
            )
        when = (
            " when " + ", ".join(f"{c.parent} {c.to_dict()}" for c in dimension.when)
            if dimension.when
            else ""
        )
        click.echo(f"  {dimension.name:<15} {what}{when}")


COMMANDS = (validate_command,)


def print_policy_state(result: Any) -> None:
    """After a search: the Pareto front of accuracy against tokens, and what a space
    policy learned (REINFORCE's preferred choices, TPE's best trial and its study)."""
    from promptopt.bias import strategy_text

    front = result.pareto_front
    if len(front) > 1:
        click.echo("pareto      dev accuracy vs tokens per example (cheapest first):")
        for row in front:
            click.echo(f"            {row.mean:6.1%}  {row.tokens_per_example:7.0f} tok/ex  {row.candidate.hash[:10]}"
                       f"  samples={row.candidate.samples} demos={len(row.candidate.demo_ids) or row.candidate.similar_demos}"
                       f" cot={row.candidate.cot_mode}{strategy_text(row.candidate).replace(', ', ' ')}")  # fmt: skip
    state = result.policy_state or {}
    if "reflection" in state:
        from promptopt.report_reflect import reflection_line

        click.echo(f"reflect     {reflection_line(state['reflection'])}")
    selection = getattr(result, "selection", None) or {}
    tied = [row for row in selection.get("compared", []) if row.get("tied")]
    balanced = selection.get("balanced_accuracy")
    if balanced:
        chosen, by_mean = selection.get("chosen"), selection.get("best_by_mean")
        other = "" if chosen == by_mean else f"; the best dev mean's {balanced.get(by_mean, 0.0):.1%}"
        click.echo(f"selection   picked the best balanced accuracy on dev of {len(balanced)} finalists: "
                   f"{balanced.get(chosen, 0.0):.1%}{other} (balanced)")  # fmt: skip
    elif tied:
        picked = (
            "the cheapest of them"
            if selection.get("chosen") != selection.get("best_by_mean")
            else "the best mean"
        )
        click.echo(f"selection   {len(tied)} finalist(s) within the paired 95% band of the best on dev; "
                   f"picked {picked} ({selection.get('selection')})")  # fmt: skip
    if "preferred" in state:
        click.echo("learned     REINFORCE's most likely choice per dimension (probability):")
        for name, rows in state["distribution"].items():
            top = rows[0]
            click.echo(f"            {name:<15} {_short(top['choice'])}  (p={top['p']:.2f} of {len(rows)})")
    if "best_trial" in state:
        best = state["best_trial"]
        click.echo(f"optuna      study {state['study']}: {state.get('trials')}; best trial #{best['number']} "
                   f"(dev {best['value']:.1%}): " + ", ".join(f"{k}={_short(v)}" for k, v in best["params"].items()))  # fmt: skip
        if "dashboard" in state:
            click.echo(f"            {state['dashboard']}")


def _short(value: Any, width: int = 48) -> str:
    text = " ".join(str(value).split()) if not isinstance(value, str) or value else "''"
    return text if len(text) <= width else text[: width - 1] + "…"
