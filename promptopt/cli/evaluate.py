"""``promptopt eval``: score one prompt on a task split and print the report.
Registered in :mod:`promptopt.cli.app`."""

from __future__ import annotations

import json
from typing import Any

import click

from promptopt.cli.options import (
    DATA_HELP,
    _backend_options,
    _candidate_from_options,
    _model_options,
    _model_spec,
    _progress_display,
    _prompt_options,
    _refuse_prompt_options,
)
from promptopt.terminal import printable


@click.command("eval")
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
    from promptopt.bias.costs import steady_calls
    from promptopt.evaluation import evaluate
    from promptopt.metrics import parse_metric_option
    from promptopt.session import Session
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
    session = Session(options["db"])  # the store, the eval run and its model stack
    store = session.store
    items = task.examples(split, limit)
    backend = make_backend(model, batch_size=options["batch_size"], **_backend_options(options))
    if prompt_file is not None and not options["model"]:
        from promptopt.export.loaded import other_model_note

        if (note := other_model_note(backend.model_id, loaded.model)) is not None:
            click.echo(f"warning: {note}", err=True)
    settings = {"split": split, "limit": limit, "db": session, "cache": not options["no_cache"],
                "batch_size": options["batch_size"], "seed": options["seed"],
                "metric": metric_obj}  # fmt: skip
    with _progress_display(not options["no_progress"] and not as_json, f"{task.name} {split}") as bar:
        shown = loaded.candidate if prompt_file is not None else candidate
        bar.start(len(items), steady_calls(shown, items) / max(1, len(items)))  # requests per item: its step
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
    session.close()
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
    from promptopt.cli.answers import print_eval_answers

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


COMMANDS = (eval_command,)
