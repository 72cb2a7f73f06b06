"""``promptopt runs`` and ``promptopt db upgrade``: the runs in the store, and its schema.
Registered in :mod:`promptopt.cli.app`."""

from __future__ import annotations

import json

import click

from promptopt.cli.options import DB_HELP
from promptopt.terminal import printable


@click.command("runs")
@click.option("--db", default=None, help=DB_HELP)
@click.option(
    "--limit", type=click.IntRange(min=1), default=30, show_default=True, help="How many runs, newest first."
)
@click.option("--json", "as_json", is_flag=True, help="Print the list as JSON.")
def runs_command(db: str | None, limit: int, as_json: bool) -> None:
    """List runs (newest first) with their state; interrupted searches can be resumed."""
    from promptopt.lease import owner_alive
    from promptopt.store import Store

    store = Store(db)
    runs = store.list_runs(limit=limit)
    store.close()
    # A "running" run whose process is gone (killed, machine lost) is stale: resumable.
    stale = {r.id for r in runs if r.status == "running" and not owner_alive(r)}
    if as_json:
        click.echo(json.dumps([{"id": r.id, "kind": r.kind, "task": r.task, "model": r.model, "status": r.status,
                                "stale": r.id in stale, "created_at": r.created_at.isoformat()} for r in runs],
                              indent=2))  # fmt: skip
        return
    for run in runs:
        status = "stale" if run.id in stale else run.status
        score = ""
        summary = run.summary or {}
        if "accuracy" in summary:
            score = f"accuracy {summary['accuracy']:.1%} (n={summary.get('n')})"
        elif "test" in summary and "winner" in summary.get("test", {}):
            score = f"winner test {summary['test']['winner']['accuracy']:.1%}"
        click.echo(printable(
            f"{run.id}  {run.created_at:%Y-%m-%d %H:%M}  {run.kind:<6} {status:<11} {run.task:<22} {run.model:<28} {score}"
        ))  # fmt: skip


@click.group("db")
def db_group() -> None:
    """Manage the results database (schema migrations)."""


@db_group.command("upgrade")
@click.option("--db", default=None, help=DB_HELP)
def db_upgrade(db: str | None) -> None:
    """Bring a database written by an older promptopt up to this version's schema."""
    from promptopt.store import Store

    before, after = Store.upgrade(db)
    if before == after:
        click.echo(f"database already at schema revision {after}")
    else:
        click.echo(f"upgraded database from schema revision {before or '(empty)'} to {after}")


COMMANDS = (runs_command, db_group)
