"""The ``promptopt`` command line. Thin by design: parse options, call one library
function, print its result; a :class:`PromptOptError` becomes one clear message and
exit code 2."""

from __future__ import annotations

import json
import sys
from typing import Any

import click

from promptopt.cli_checks import refuse_with_resume, resume_command, warn_sizes  # noqa: F401 (resume_command: re-exported)
from promptopt.cli_options import (
    DATA_HELP,
    DB_HELP,
    _backend_options,
    _candidate_from_options,
    _model_options,
    _model_spec,
    _progress_display,
    _prompt_options,
    _refuse_prompt_options,
)
from promptopt.errors import PromptOptError
from promptopt.terminal import printable


class PromptOptGroup(click.Group):
    """Turns library errors into a message and exit code 2 instead of a traceback."""

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except PromptOptError as exc:
            click.secho(f"error: {printable(exc.message)}", fg="red", err=True)
            if exc.hint:
                click.echo(f"  hint: {printable(exc.hint)}", err=True)
            ctx.exit(2)
        except KeyboardInterrupt:
            click.echo("interrupted; results stored so far are kept", err=True)
            ctx.exit(130)


@click.group(
    cls=PromptOptGroup, context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100}
)
@click.version_option(package_name="promptopt")
def cli() -> None:
    """promptopt: find the prompt that scores best on your task, and keep every result.

    \b
    Quick start (offline, local model):
      promptopt tasks
      promptopt eval --task gsm-symbolic --limit 20 --cot "Let's think step by step."
    """


@cli.command("tasks")
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


@cli.command("eval")
@click.option(
    "--task", "task_name", default=None, help="Task name (see `promptopt tasks`) or path to a task YAML file."
)
@click.option("--data-dir", type=click.Path(file_okay=False), default=None, help=DATA_HELP)
@click.option(
    "--split",
    type=click.Choice(["dev", "test", "train"]),
    default="test",
    show_default=True,
    help="Split to score: test is the official held-out split; dev is drawn from train.",
)
@click.option(
    "--limit", type=click.IntRange(min=1), default=None, help="Score only the first N examples of the split."
)
@click.option(
    "--prompt-file",
    type=click.Path(dir_okay=False, exists=True),
    default=None,
    help="Evaluate an exported prompt (yaml/json from `promptopt export`) instead of the prompt options; "
    "on dev it reproduces the stored dev score (same model, cache on).",
)
@_prompt_options
@_model_options
@click.option(
    "--no-cache",
    is_flag=True,
    help="Call the model even for requests already answered in the response cache.",
)
def eval_command(
    task_name: str | None, data_dir: str | None, split: str, limit: int | None, prompt_file: str | None, **options: Any
) -> None:  # fmt: skip
    """Score one prompt on a task split; print accuracy with its 95% CI, tokens, calls and time.

    Every evaluation (raw output, parsed answer, score, tokens, latency) is stored in the
    database, and every model answer in its response cache.

    \b
    Example:
      promptopt eval --task gsm8k --data-dir ../shared/data --split test --limit 100 \\
          --instruction "Solve the math word problem." --cot "Let's think step by step."
    """
    from promptopt.backends import make_backend
    from promptopt.evaluation import evaluate
    from promptopt.metrics import parse_metric_option
    from promptopt.store import Store
    from promptopt.tasks import get_task

    as_json = options["as_json"]
    if options["no_progress"]:
        from promptopt.progress import quiet_library_progress

        quiet_library_progress()
    if prompt_file is not None:
        _refuse_prompt_options(click.get_current_context(), "--prompt-file")
        from promptopt.export import load

        loaded = load(prompt_file)
        task = get_task(task_name or loaded.task.name, data_dir)
        if split == "dev" and limit is None:
            limit = (loaded.provenance.get("dev") or {}).get("n_examples")
        model = options["model"] or loaded.model
    else:
        if task_name is None:
            raise click.UsageError("--task is required (or --prompt-file)")
        task = get_task(task_name, data_dir)
        candidate = _candidate_from_options(task, options)
        model = _model_spec(options["model"])
    metric = parse_metric_option(options["metric"])
    if metric is not None:
        task = task.with_metric(metric)
    metric_obj = task.metric  # a bad metric fails here, before any work (a task file's reference loads now)
    store = Store(options["db"])
    examples = len(task.examples(split, limit))
    backend = make_backend(model, batch_size=options["batch_size"], **_backend_options(options))
    settings = {"split": split, "limit": limit, "db": store, "cache": not options["no_cache"],
                "batch_size": options["batch_size"], "seed": options["seed"],
                "metric": metric_obj}  # fmt: skip
    with _progress_display(not options["no_progress"] and not as_json, f"{task.name} {split}") as bar:
        bar.start(examples, (loaded.candidate if prompt_file is not None else candidate).samples)
        settings["on_answers"] = bar.answered  # the bar moves with answers, not per stored batch
        if prompt_file is not None:
            report = loaded.evaluate(task, backend=backend, progress=bar.update, **settings)
        else:
            report = evaluate(task, candidate, backend, progress=bar.update, **settings)
    backend.close()
    sizes = task.split_sizes()
    if as_json:
        summary = {**report.summary(), "n_scored": report.n_scored, "splits": sizes, "db": store.display_url}
        click.echo(json.dumps(summary, indent=2))
    else:
        _print_report(report, store.display_url)
        from promptopt.tasks.splits import sizes_line

        click.echo(sizes_line(sizes))
    store.close()
    from promptopt.failures import check_results

    check_results(report.results, "the evaluation", options["api_key_env"])


def _print_report(report: Any, db_url: str) -> None:
    def echo(line: str) -> None:
        click.echo(printable(line))

    echo(
        f"{report.task} · {report.split} · {report.n} examples · {report.model} · candidate {report.candidate.hash}"
    )
    echo(
        f"accuracy    {report.accuracy:.1%}  (95% CI {report.ci_low:.1%}–{report.ci_high:.1%}, "
        f"{report.n_scored} of {report.n} scored, {report.n_failed} failed)"
    )
    from promptopt.cli_answers import print_eval_answers

    print_eval_answers(report)
    echo(
        f"tokens      {report.tokens_in_per_example:.1f} in / {report.tokens_out_per_example:.1f} out per example"
    )
    echo(f"calls       {report.calls} (cache hits {report.cache_hits}, retries {report.retries})")
    if report.judge.get("calls"):
        echo(f"judge       {report.judge['calls']} judge requests ({report.judge.get('model_calls', 0)} real calls, "
             f"{report.judge.get('cache_hits', 0)} cache hits, {report.judge.get('failed', 0)} unreadable)")  # fmt: skip
    if report.metric != "exact_match":
        echo(f"metric      {report.metric} (mean score)")
    echo(f"wall time   {report.wall_s:.1f} s")
    echo(f"run         {report.run_id} in {db_url}")


@cli.command("runs")
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


@cli.group("db")
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


@cli.command("models")
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


def _register_result_commands() -> None:
    from promptopt.cli_results import COMMANDS as RESULTS
    from promptopt.cli_search import COMMANDS as SEARCH

    for command in (*SEARCH, *RESULTS):
        cli.add_command(command)


_register_result_commands()


def _register_space_commands() -> None:
    from promptopt.cli_spaces import COMMANDS

    for command in COMMANDS:
        cli.add_command(command)


_register_space_commands()


def main(argv: list[str] | None = None) -> None:
    """Console-script entry point."""
    cli.main(args=argv, prog_name="promptopt")


if __name__ == "__main__":  # pragma: no cover
    main(sys.argv[1:])
