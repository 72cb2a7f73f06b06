"""``promptopt tasks`` and ``promptopt models``: what can be named with ``--task`` and
``--model``. Registered in :mod:`promptopt.cli.app`."""

from __future__ import annotations

import json
from typing import Any

import click

from promptopt.terminal import printable


@click.command("tasks")
@click.option("--data-dir", type=click.Path(file_okay=False), default=None,
              help="Also list the bbh: subtasks whose data is here. Default: $PROMPTOPT_DATA_DIR.")  # fmt: skip
@click.option("--json", "as_json", is_flag=True, help="Print the list as JSON.")
def tasks_command(data_dir: str | None, as_json: bool) -> None:
    """List the tasks that can be named with --task (built-in and custom task files).

    Custom tasks are YAML files in ./tasks or in the folders of $PROMPTOPT_TASK_PATH;
    a path to a YAML file also works as --task."""
    from promptopt.tasks import list_tasks

    infos = list_tasks(data_dir)
    if as_json:
        click.echo(
            json.dumps(
                [{"name": i.name, "description": i.description, "origin": i.origin} for i in infos], indent=2
            )
        )
        return
    width = max(len(i.name) for i in infos)
    for info in infos:
        origin = "" if info.origin == "builtin" else f"  [{info.origin}]"
        click.echo(printable(f"{info.name:<{width}}  {info.description}{origin}"))


@click.command("models")
@click.option("--json", "as_json", is_flag=True, help="Print the list as JSON.")
def models_command(as_json: bool) -> None:
    """List the known local models, whether each is installed, and how to install it."""
    from promptopt.models import model_status

    statuses = model_status()
    if as_json:
        click.echo(json.dumps([_plain(s) for s in statuses], indent=2, default=str))
        return
    for status in statuses:
        data = _plain(status)
        state = "installed" if data.get("installed") else "not installed"
        click.echo(f"{data['name']}: {state} — {data.get('description', '')}")
        if not data.get("installed") and data.get("install_command"):
            click.echo(f"    install: {data['install_command']}")


def _plain(value: Any) -> dict[str, Any]:
    from dataclasses import asdict, is_dataclass

    if is_dataclass(value) and not isinstance(value, type):
        return asdict(value)
    return dict(value)


COMMANDS = (tasks_command, models_command)
