"""The ``promptopt`` command group: its error handling, its entry point, and the
registration of the commands, one module per command group in :mod:`promptopt.cli`."""

from __future__ import annotations

import sys
from typing import Any

import click

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


def _register_commands() -> None:
    from promptopt.cli import catalog, evaluate, results, runs, search, spaces

    for group in (catalog, evaluate, runs, search, results, spaces):
        for command in group.COMMANDS:
            cli.add_command(command)


_register_commands()


def main(argv: list[str] | None = None) -> None:
    """Console-script entry point."""
    cli.main(args=argv, prog_name="promptopt")


if __name__ == "__main__":  # pragma: no cover
    main(sys.argv[1:])
