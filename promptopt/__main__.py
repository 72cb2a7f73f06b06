"""``python -m promptopt``: the command line, as the installed ``promptopt`` script."""

from promptopt.cli import main

if __name__ == "__main__":  # pragma: no cover
    main()
