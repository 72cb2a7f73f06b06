"""Checks of command-line input that would otherwise be accepted silently (issue #24):
demos too many for any context window, split sizes beyond the data, options a resume
would ignore; and the resume command a user can paste."""

from __future__ import annotations

import shlex
from typing import Any

import click

#: Above this many tokens a prompt fits no supported model's context window.
MAX_PROMPT_TOKENS = 131_072
#: Above this many, a warning: most local models' windows are 32k tokens.
WARN_PROMPT_TOKENS = 32_768


def check_demos(task: Any, candidate: Any, shots: int) -> None:
    """``--shots`` beyond the demo pool is a warning; a prompt no model can take is an error."""
    from promptopt.errors import ConfigError
    from promptopt.prompt import render_messages

    if shots > len(candidate.demo_ids):
        click.echo(
            f"warning: --shots {shots}: the task has {len(candidate.demo_ids)} demos; using them all",
            err=True,
        )
    if not candidate.demo_ids:
        return
    example = next((e for split in ("dev", "test", "train") for e in _first_example(task, split)), None)
    if example is None:
        return
    words = sum(len(m.content.split()) for m in render_messages(candidate, task, example))
    tokens = int(1.4 * words)  # the estimate of promptopt.policies.estimates.prompt_tokens
    where = f"{len(candidate.demo_ids)} demos make prompts of ~{tokens:,} tokens"
    if tokens > MAX_PROMPT_TOKENS:
        raise ConfigError(f"{where}, more than any model's context window", hint="use fewer --shots (e.g. 8)")
    if tokens > WARN_PROMPT_TOKENS:
        click.echo(f"warning: {where}; most models take at most {WARN_PROMPT_TOKENS:,}", err=True)


def _first_example(task: Any, split: str) -> list[Any]:
    from promptopt.errors import PromptOptError

    try:
        return task.examples(split, 1)
    except (PromptOptError, KeyError, ValueError):
        return []


def warn_sizes(task: Any, dev_size: int | None, test_size: int | None) -> None:
    """A dev or test size larger than the data is used as far as the data goes: say so."""
    for split, asked in (("dev", dev_size), ("test", test_size)):
        if asked is None:
            continue
        available = len(task.examples(split))
        if asked > available:
            click.echo(f"warning: {split} size {asked}: the task has {available} {split} examples; using {available}",
                       err=True)  # fmt: skip


_RESUME_KEEPS = {
    "resume",
    "take_over",
    "db",
    "as_json",
    "no_progress",
    "dry_run",
    "metric",  # a user metric is named again
    "data_dir",  # where the run's data is now (checked to be the same data)
}


def refuse_with_resume(ctx: click.Context) -> None:
    """A resumed run keeps the settings it was started with: other options would be ignored."""
    flags = {p.name: p.opts[0] for p in ctx.command.params if p.opts}
    given = sorted(
        flags.get(name, "--" + name.replace("_", "-"))
        for name in ctx.params
        if name not in _RESUME_KEEPS
        and ctx.get_parameter_source(name) == click.core.ParameterSource.COMMANDLINE
    )
    if given:
        raise click.UsageError(
            f"{', '.join(given)} cannot be combined with --resume: a resumed run keeps the settings it was started with"
        )


def resume_command(run_id: str, url: str, metric: Any = None, data_dir: str | None = None) -> str:
    """The command that resumes ``run_id``, ready to paste: a database password is left out
    (and the line says so) rather than printed or masked. ``metric`` is the run's stored
    metric: a user metric named by a reference must be named again (``--metric``);
    ``data_dir`` where this resume found the run's data (``--data-dir``), if it moved."""
    from promptopt.metrics import is_user_code
    from promptopt.store import url_without_password

    safe, had_password = url_without_password(url)
    command = f"promptopt search --resume {run_id} --db {shlex.quote(safe)}"
    if isinstance(metric, str) and is_user_code(metric):
        command += f" --metric {shlex.quote(metric)}"
    if data_dir:
        command += f" --data-dir {shlex.quote(data_dir)}"
    if had_password:
        command += "   (password left out: give it in PGPASSWORD or ~/.pgpass)"
    return command


def parse_ray_resources(text: str | None) -> dict[str, float] | None:
    """``--ray-resources`` as a dict of positive numbers, or a usage error naming the flag."""
    if text is None:
        return None
    import json

    try:
        value = json.loads(text)
    except json.JSONDecodeError as exc:
        raise click.BadParameter(f"not JSON ({exc.msg})", param_hint="--ray-resources") from None
    if not isinstance(value, dict) or not all(
        isinstance(v, int | float) and not isinstance(v, bool) and v > 0 for v in value.values()
    ):
        raise click.BadParameter(
            'expected an object of positive numbers, e.g. {"worker_node": 0.01}', param_hint="--ray-resources"
        )
    return {str(k): float(v) for k, v in value.items()}
