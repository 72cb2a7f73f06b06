"""What the benchmarks' plots share: opening a figure without a display, and saving it.
matplotlib is in the ``dev`` extra; without it a benchmark still writes its JSON."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any


def figure(note: str = "") -> tuple[Any, Any] | None:
    """A new ``(figure, axes)``, or None (with a message) when matplotlib is missing."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        print(
            f"matplotlib is not installed: no plot (pip install matplotlib, or '.[dev]'){note}",
            file=sys.stderr,
        )
        return None
    return plt.subplots(figsize=(8, 5), dpi=120)


def save(fig: Any, ax: Any, path: Path) -> None:
    """Grid, legend and tight layout, then write ``path`` (its folder made) and close."""
    import matplotlib.pyplot as plt

    ax.grid(alpha=0.3)
    ax.legend(fontsize=8, loc="best")
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path)
    plt.close(fig)
