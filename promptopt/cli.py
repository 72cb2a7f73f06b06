"""The ``promptopt`` command line. Thin by design: parse options, call one library
function, print its result; a :class:`PromptOptError` becomes one clear message and
exit code 2."""

from __future__ import annotations

import json
import sys
from collections.abc import Callable
from typing import Any

import click

from promptopt.errors import PromptOptError

DB_HELP = "Database URL (SQLAlchemy) or SQLite file path. Default: $PROMPTOPT_DB, else ./promptopt.db."
DATA_HELP = "Folder with the benchmark data (e.g. ../shared/data). Default: $PROMPTOPT_DATA_DIR, else the hub (online)."


class PromptOptGroup(click.Group):
    """Turns library errors into a message and exit code 2 instead of a traceback."""

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except PromptOptError as exc:
            click.secho(f"error: {exc.message}", fg="red", err=True)
            if exc.hint:
                click.echo(f"  hint: {exc.hint}", err=True)
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
@click.option("--json", "as_json", is_flag=True, help="Print the list as JSON.")
def tasks_command(as_json: bool) -> None:
    """List the tasks that can be named with --task (built-in and custom task files).

    Custom tasks are YAML files in ./tasks or in the folders of $PROMPTOPT_TASK_PATH;
    a path to a YAML file also works as --task."""
    from promptopt.tasks import list_tasks

    infos = list_tasks()
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
        click.echo(f"{info.name:<{width}}  {info.description}{origin}")


def _progress_display(enabled: bool, total_label: str) -> Any:
    from promptopt.progress import EvalProgressBar

    return EvalProgressBar(total_label, enabled=enabled)


@cli.command("eval")
@click.option(
    "--task",
    "task_name",
    required=True,
    help="Task name (see `promptopt tasks`) or path to a task YAML file.",
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
@click.option("--instruction", default=None, help="Instruction (system message). Default: the task's own.")
@click.option(
    "--cot",
    default=None,
    help='Chain-of-thought trigger, e.g. "Let\'s think step by step." Zero-shot CoT '
    "with --shots 0; with --shots N the demos show worked solutions (few-shot CoT).",
)
@click.option(
    "--shots",
    type=click.IntRange(min=0),
    default=0,
    show_default=True,
    help="Number of demos from the train split.",
)
@click.option(
    "--demos", default=None, help="Comma-separated demo ids instead of --shots (e.g. train-00012,cot-0)."
)
@click.option(
    "--answer-format",
    default=None,
    help="Line that tells the model how to state its answer. Default: the task's.",
)
@click.option(
    "--samples",
    type=click.IntRange(min=1),
    default=1,
    show_default=True,
    help="Self-consistency: sample N answers and take the majority vote.",
)
@click.option(
    "--temperature",
    type=click.FloatRange(min=0.0),
    default=None,
    help="Sampling temperature. Default: 0 (greedy), or 0.7 with --samples > 1.",
)
@click.option(
    "--max-tokens",
    type=click.IntRange(min=1),
    default=512,
    show_default=True,
    help="Most tokens generated per answer.",
)
@click.option(
    "--two-stage",
    is_flag=True,
    help="Ask a second short question for the final answer after the reasoning (Kojima et al.).",
)
@click.option(
    "--model",
    default=None,
    help="Model: a local model name (`promptopt models`; default qwen2.5-coder-1.5b), "
    "local/<path.gguf|hf_dir>, openai/<model>, or fake.",
)
@click.option(
    "--base-url",
    default=None,
    help="Endpoint of an OpenAI-compatible server (with --model openai/...). Default: $OPENAI_BASE_URL or OpenAI.",
)
@click.option(
    "--api-key-env",
    default="OPENAI_API_KEY",
    show_default=True,
    help="Environment variable that holds the API key (keys are never stored).",
)
@click.option(
    "--concurrency",
    type=click.IntRange(min=1),
    default=8,
    show_default=True,
    help="Requests in flight at once (API backends).",
)
@click.option(
    "--batch-size",
    type=click.IntRange(min=1),
    default=16,
    show_default=True,
    help="Requests generated as one batch.",
)
@click.option("--db", default=None, help=DB_HELP)
@click.option(
    "--no-cache",
    is_flag=True,
    help="Call the model even for requests already answered in the response cache.",
)
@click.option(
    "--seed", type=int, default=0, show_default=True, help="Seed for demo choice (recorded with the run)."
)
@click.option("--json", "as_json", is_flag=True, help="Print the result as JSON on stdout.")
@click.option("--no-progress", is_flag=True, help="Do not show the progress bar.")
def eval_command(
    task_name: str, data_dir: str | None, split: str, limit: int | None, instruction: str | None, cot: str | None,
    shots: int, demos: str | None, answer_format: str | None, samples: int, temperature: float | None,
    max_tokens: int, two_stage: bool, model: str | None, base_url: str | None, api_key_env: str, concurrency: int,
    batch_size: int, db: str | None, no_cache: bool, seed: int, as_json: bool, no_progress: bool,
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
    from promptopt.evaluation import evaluate, make_candidate
    from promptopt.store import Store
    from promptopt.tasks import get_task

    task = get_task(task_name, data_dir)
    candidate = make_candidate(
        task, instruction=instruction, cot=cot, shots=shots, answer_format=answer_format, samples=samples,
        temperature=temperature, max_tokens=max_tokens, two_stage=two_stage,
        demo_ids=[d.strip() for d in demos.split(",") if d.strip()] if demos else None, seed=seed,
    )  # fmt: skip
    store = Store(db)
    examples = len(task.examples(split, limit))
    if model is None:
        from promptopt.models import DEFAULT_MODEL

        model = DEFAULT_MODEL
    backend = make_backend(
        model, base_url=base_url, api_key_env=api_key_env, concurrency=concurrency, batch_size=batch_size
    )
    label = f"{task.name} {split}"
    with _progress_display(not no_progress and not as_json, label) as bar:
        bar.start(examples)
        report = evaluate(
            task, candidate, backend, split=split, limit=limit, db=store, cache=not no_cache,
            batch_size=batch_size, seed=seed, progress=bar.update,
        )  # fmt: skip
    backend.close()
    if as_json:
        click.echo(json.dumps({**report.summary(), "db": store.display_url}, indent=2))
    else:
        _print_report(report, store.display_url)
    store.close()


def _print_report(report: Any, db_url: str) -> None:
    echo: Callable[[str], None] = click.echo
    echo(
        f"{report.task} · {report.split} · {report.n} examples · {report.model} · candidate {report.candidate.hash}"
    )
    echo(
        f"accuracy    {report.accuracy:.1%}  (95% CI {report.ci_low:.1%}–{report.ci_high:.1%}, "
        f"n={report.n_scored}, {report.n_failed} failed)"
    )
    echo(
        f"tokens      {report.tokens_in_per_example:.1f} in / {report.tokens_out_per_example:.1f} out per example"
    )
    echo(f"calls       {report.calls} (cache hits {report.cache_hits}, retries {report.retries})")
    echo(f"wall time   {report.wall_s:.1f} s")
    echo(f"run         {report.run_id} in {db_url}")


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
        marker = " (default)" if data.get("default") else ""
        click.echo(f"{data['name']}{marker}: {state} — {data.get('description', '')}")
        if not data.get("installed") and data.get("install_command"):
            click.echo(f"    install: {data['install_command']}")


def _plain(value: Any) -> dict[str, Any]:
    from dataclasses import asdict, is_dataclass

    if is_dataclass(value) and not isinstance(value, type):
        return asdict(value)
    return dict(value)


def main(argv: list[str] | None = None) -> None:
    """Console-script entry point."""
    cli.main(args=argv, prog_name="promptopt")


if __name__ == "__main__":  # pragma: no cover
    main(sys.argv[1:])
