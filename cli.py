"""Run the promptopt command line from a source checkout: ``python cli.py --help``.

The command itself lives in :mod:`promptopt.cli` so that the installed ``promptopt``
console script (and a built wheel) work without this file.
"""

from promptopt.cli import main

if __name__ == "__main__":
    main()
