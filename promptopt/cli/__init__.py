"""The ``promptopt`` command line. Thin by design: parse options, call one library
function, print its result; a :class:`~promptopt.errors.PromptOptError` becomes one clear
message and exit code 2.

One module per command group: :mod:`~promptopt.cli.catalog` (``tasks``, ``models``),
:mod:`~promptopt.cli.evaluate` (``eval``), :mod:`~promptopt.cli.search` (``search``),
:mod:`~promptopt.cli.results` (``leaderboard``, ``show``, ``export``, ``report``),
:mod:`~promptopt.cli.runs` (``runs``, ``db upgrade``), :mod:`~promptopt.cli.spaces`
(``validate``); the group itself and the entry point in :mod:`~promptopt.cli.app`; the
shared options and checks in :mod:`~promptopt.cli.options`, :mod:`~promptopt.cli.checks`,
:mod:`~promptopt.cli.policy_options` and :mod:`~promptopt.cli.answers`.
"""

from promptopt.cli.app import PromptOptGroup, cli, main
from promptopt.cli.checks import resume_command

__all__ = ["PromptOptGroup", "cli", "main", "resume_command"]
