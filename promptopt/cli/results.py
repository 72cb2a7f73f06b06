"""Commands over stored results: ``leaderboard``, ``show``, ``export``, ``report``.

Thin like the rest of the CLI: parse options, call one library function
(:mod:`promptopt.leaderboard`, :mod:`promptopt.export`, :mod:`promptopt.report`), print.
A :class:`~promptopt.errors.PromptOptError` propagates to the command group, which prints
it and exits with code 2. Registered in :mod:`promptopt.cli.app`.
"""

from __future__ import annotations

import json
from typing import Any

import click

from promptopt.terminal import printable

DB_HELP = "Database URL (SQLAlchemy) or SQLite file path. Default: $PROMPTOPT_DB, else ./promptopt.db."
DATA_HELP = (
    "Folder with the task data, needed to write out demos (default: the run's, else $PROMPTOPT_DATA_DIR)."
)


def _pct(score: Any) -> str:
    return "–" if score is None else f"{score.accuracy:.1%}"


def _ci(score: Any) -> str:
    return "–" if score is None else f"{score.ci_low:.1%}–{score.ci_high:.1%}"


def _counts(score: Any) -> str:
    """``3/1``: no answer found / cut off at the token limit; ``!`` past 10% of outputs."""
    if score is None:
        return "–"
    return f"{score.n_no_answer}/{score.n_truncated}" + ("!" if score.counts.flagged else "")


def _short(text: str, width: int = 60) -> str:
    text = printable(" ".join(text.split()))
    return text if len(text) <= width else text[: width - 1] + "…"


@click.command("leaderboard")
@click.option("--task", default=None, help="Only runs of this task (name as stored, e.g. gsm8k).")
@click.option(
    "--model", default=None, help="Only runs on this model (as stored, e.g. fake, openai/gpt-4o-mini)."
)
@click.option("--run", "run_id", default=None, help="Only this run.")
@click.option("--top", type=click.IntRange(min=1), default=20, show_default=True, help="How many rows.")
@click.option("--min-n", type=click.IntRange(min=0), default=0, show_default=True,
              help="Only candidates with at least this many scored dev examples.")  # fmt: skip
@click.option("--prices", type=click.Path(dir_okay=False), default=None,
              help="YAML file of model prices (USD per million tokens) for the cost column; default $PROMPTOPT_PRICES.")  # fmt: skip
@click.option("--db", default=None, help=DB_HELP)
@click.option("--json", "as_json", is_flag=True, help="Print the rows as JSON.")
def leaderboard_command(
    task: str | None, model: str | None, run_id: str | None, top: int, min_n: int, prices: str | None,
    db: str | None, as_json: bool,
) -> None:  # fmt: skip
    """Candidates across runs, best dev accuracy first, with 95% CI and n, test score
    where measured, tokens and cost per example, policy, origin and run. A `*` under
    pareto marks the accuracy/cost Pareto front: no other candidate of the same task and
    model is both more accurate and cheaper (tokens per example)."""
    from promptopt.cli.answers import leaderboard_answers, leaderboard_constants
    from promptopt.leaderboard import leaderboard
    from promptopt.store import Store

    with Store(db) as store:
        entries = leaderboard(
            store, task=task, model=model, run=run_id, top=top, min_dev_n=min_n, prices=prices
        )
        constants = leaderboard_constants(store, entries)
        answer_lines = leaderboard_answers(store, entries) if constants and not as_json else []
    if as_json:
        click.echo(json.dumps([e.to_dict() for e in entries], indent=2))
        return
    if not entries:
        click.echo("no evaluated candidates" + (" match the filters" if task or model or run_id else ""))
        return
    # Plain aligned columns (pipes and narrow terminals alike); task and model become
    # columns only when the rows differ in them.
    tasks, models = {e.task for e in entries}, {e.model for e in entries}
    click.echo("leaderboard (dev)" + "".join(f" · {next(iter(v))}" for v in (tasks, models) if len(v) == 1))
    header = (
        ["#", "candidate", "run"]
        + (["task"] if len(tasks) > 1 else [])
        + (["model"] if len(models) > 1 else [])
    )
    header += [
        "policy/origin",
        "dev",
        "95% CI",
        "n",
        "no ans/cut",
        "test",
        "n",
        "no ans/cut",
        "tok/ex",
        "cost/ex",
        "pareto",
        "instruction",
    ]
    rows = [header]
    for e in entries:
        cost = "–" if e.cost_per_example is None else f"${e.cost_per_example:.5f}"
        row = [str(e.rank), e.candidate[:10], e.run_id]
        row += ([e.task] if len(tasks) > 1 else []) + ([e.model] if len(models) > 1 else [])
        row += [
            f"{e.policy}/{e.origin}",
            _pct(e.dev),
            _ci(e.dev),
            str(e.dev.n) if e.dev else "–",
            _counts(e.dev),
            _pct(e.test),
            str(e.test.n) if e.test else "–",
            _counts(e.test),
            f"{e.tokens_per_example:.0f}",
            cost,
            "*" if e.pareto else "",
            _short(e.spec.instruction, 60),
        ]
        rows.append([printable(cell) for cell in row])
    widths = [max(len(r[i]) for r in rows) for i in range(len(header) - 1)]
    for row in rows:
        click.echo(
            "  ".join(cell.ljust(w) for cell, w in zip(row[:-1], widths, strict=True)) + "  " + row[-1]
        )
    for line in constants + answer_lines:
        click.echo(line)
    if any(s is not None and s.counts.flagged for e in entries for s in (e.dev, e.test)):
        click.echo("no ans/cut: outputs with no answer found / cut off at the token limit; "
                   "!: more than 10% of them")  # fmt: skip


@click.command("show")
@click.argument("ref", metavar="RUN|CANDIDATE")
@click.option("--data-dir", type=click.Path(file_okay=False), default=None, help=DATA_HELP)
@click.option("--examples", type=click.IntRange(min=0), default=20, show_default=True,
              help="Per-example results to print (0: none; --json prints all).")  # fmt: skip
@click.option("--db", default=None, help=DB_HELP)
@click.option("--json", "as_json", is_flag=True, help="Print everything as JSON.")
def show_command(ref: str, data_dir: str | None, examples: int, db: str | None, as_json: bool) -> None:
    """Details of a run (its leaderboard and winning prompt) or of a candidate (full
    rendered prompt, demos, per-example results). A unique prefix of an id is enough."""
    from promptopt.leaderboard import CandidateDetails, show
    from promptopt.store import Store

    with Store(db) as store:
        details = show(store, ref, data_dir=data_dir)
    if as_json:
        click.echo(json.dumps(details.to_dict(), indent=2, default=str))
        return
    if isinstance(details, CandidateDetails):
        _print_candidate(details, examples)
        return
    run = details.run
    click.echo(printable(f"run {run.id}: {run.kind} · {run.status} · task {run.task} · model {run.model}"))
    click.echo(
        f"started {run.created_at:%Y-%m-%d %H:%M:%S} UTC · dataset {run.dataset_hash} · promptopt {run.promptopt_version}"
    )
    error = (run.summary or {}).get("error") if run.status in ("failed", "interrupted") else None
    if error:  # why it stopped, as the run stored it
        click.echo(printable(f"{run.status}: {str(error).rstrip(': ')}"))  # ("KeyboardInterrupt: ")
    for e in details.entries:
        click.echo(f"  {e.rank:>2}. {e.candidate}  {e.origin:<14} dev {_pct(e.dev)} ({_ci(e.dev)}, "
                   f"n={e.dev.n if e.dev else 0}, no ans/cut {_counts(e.dev)})  test {_pct(e.test)}  "
                   f"{_short(e.spec.instruction)}")  # fmt: skip
    state = (run.summary or {}).get("policy_state")
    if isinstance(state, dict) and isinstance(state.get("reflection"), dict):
        from promptopt.report_reflect import reflection_line

        click.echo(f"reflect {reflection_line(state['reflection'])}")
    from promptopt.cli.answers import print_run_checks

    print_run_checks(run)
    if details.best is not None:
        click.echo("")
        _print_candidate(details.best, examples)


def _print_candidate(details: Any, examples: int) -> None:
    def echo(line: str) -> None:  # prompts, answers and errors come from users and models
        click.echo(printable(line))

    c = details.candidate
    echo(f"candidate {c.hash} in run {details.run.id} ({details.run.task}, {details.run.model}); origin {details.origin}"
         + (f", parent {details.parent}" if details.parent else ""))  # fmt: skip
    for split, score in details.scores.items():
        if score is not None:
            echo(f"  {split:<5} {score.accuracy:.1%} (95% CI {score.ci_low:.1%}–{score.ci_high:.1%}, n={score.n}, "
                 f"{score.n_failed} failed, {score.counts.text()})")  # fmt: skip
            if score.counts.warning():
                echo(f"        warning: {score.counts.warning()}")
    from promptopt.bias import strategy_text
    from promptopt.cli.answers import print_answer_distribution

    print_answer_distribution(details.results)
    echo(f"  cot {c.cot_mode}, samples {c.samples}, temperature {c.temperature}, max tokens {c.max_tokens}, "
         f"two-stage {'on' if c.two_stage else 'rescue' if c.rescue else 'off'}, demos {len(c.demo_ids)}{strategy_text(c)}")  # fmt: skip
    if details.other_runs:
        echo(f"  also in runs: {', '.join(details.other_runs)}")
    echo("")
    if details.messages is None:
        echo(f"(prompt not rendered: {details.render_error})")
        echo(json.dumps(c.to_dict(), indent=2))
    else:
        for message in details.messages:
            echo(f"── {message['role']} " + "─" * 40)
            echo(message["content"])
    from promptopt.diagnostics import describe_item, per_label, worst_items

    labels = per_label(details.results, "test") or per_label(details.results, "dev")
    if labels:
        echo("")
        echo("per label (" + ("test" if per_label(details.results, "test") else "dev") + "):")
        for row in labels:
            echo(
                f"  {row.label:<20} {row.mean:.1%}  (n={row.n}"
                + (f", {row.n_failed} failed)" if row.n_failed else ")")
            )
    worst = worst_items(details.results, 5)
    if worst:
        echo("")
        echo(
            f"worst items (of {sum(1 for r in details.results if r.score is None or r.score < 1)} that lost points):"
        )
        for result in worst:
            echo("  " + describe_item(result))
    shown = details.results[:examples]
    if shown:
        echo("")
        echo(f"per-example results ({len(shown)} of {len(details.results)}):")
        for r in shown:
            mark = "✓" if r.score == 1.0 else ("!" if r.score is None else "✗")
            note = (
                " (cut off at the token limit)"
                if r.truncated
                else (" (no answer found)" if r.no_answer else "")
            )
            echo(f"  {mark} {r.split:<5} {r.example_id:<20} answer {r.answer!s:<12} gold {r.gold!s:<12}"
                 + (f" score {r.score:.2f}" if r.score is not None and 0 < r.score < 1 else "")
                 + (f" error: {r.error}" if r.error else "") + note
                 + (f" · {r.feedback}" if r.feedback and r.score != 1.0 else ""))  # fmt: skip


@click.command("export")
@click.argument("ref", metavar="RUN|CANDIDATE")
@click.option("--format", "fmt", type=click.Choice(["yaml", "json", "openai", "jinja", "dspy"]), default="yaml",
              show_default=True, help="yaml/json: the promptopt export (promptopt.load reads it); openai: the chat "
              "request body; jinja: a template of the messages; dspy: a DSPy program state (.json).")  # fmt: skip
@click.option(
    "-o", "--output", "output", required=True, type=click.Path(dir_okay=False), help="File to write."
)
@click.option(
    "--task",
    "task_name",
    default=None,
    help="Task name or YAML path, if the run's task cannot be found by its name.",
)
@click.option("--data-dir", type=click.Path(file_okay=False), default=None, help=DATA_HELP)
@click.option("--db", default=None, help=DB_HELP)
def export_command(
    ref: str, fmt: str, output: str, task_name: str | None, data_dir: str | None, db: str | None
) -> None:
    """Export the prompt of a finished run (a search's winner, an eval's prompt) or of a
    candidate: complete as it was scored, with its provenance, and never a secret."""
    from promptopt.export import export

    result = export(db, ref, fmt, output, data_dir=data_dir, task=task_name)
    click.echo(f"wrote {result.path} ({result.format}): candidate {result.candidate} of run {result.run_id}")


@click.command("report")
@click.argument("run_id", metavar="RUN")
@click.option("-o", "--output", "output", default="report.html", show_default=True,
              type=click.Path(dir_okay=False), help="HTML file to write.")  # fmt: skip
@click.option("--data-dir", type=click.Path(file_okay=False), default=None, help=DATA_HELP)
@click.option("--db", default=None, help=DB_HELP)
def report_command(run_id: str, output: str, data_dir: str | None, db: str | None) -> None:
    """Write one self-contained HTML page about a run: leaderboard, best score against
    requests spent, CI bars, the accuracy/tokens Pareto plot and the winning prompt."""
    from promptopt.report import write_report

    result = write_report(db, run_id, output, data_dir=data_dir)
    click.echo(f"wrote {result.path}: run {result.run_id}, {result.candidates} candidates")


COMMANDS = (leaderboard_command, show_command, export_command, report_command)
