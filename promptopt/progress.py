"""Progress display for long work (rich, on stderr): bar, count, running accuracy, ETA."""

from __future__ import annotations

from dataclasses import dataclass
from types import TracebackType
from typing import Any


@dataclass
class PhaseProgress:
    """Requests answered in a search's final or test phase (the controller's count)."""

    phase: str = ""
    total: int = 0
    answered: int = 0
    shown: int = -1  # the percentage last reported
    pool: int = 0


class EvalProgressBar:
    """A context manager; ``update`` takes :class:`promptopt.evaluation.EvalProgress`.
    Disabled, it does nothing (for ``--json``, ``--no-progress`` and scripts)."""

    def __init__(self, label: str, *, enabled: bool = True) -> None:
        self.label = label
        self.enabled = enabled
        self._progress: Any = None
        self._task: Any = None
        self._total, self._per_example, self._answers, self._done = 0, 1.0, 0, 0

    def __enter__(self) -> EvalProgressBar:
        if self.enabled:
            from rich.console import Console
            from rich.progress import (
                BarColumn,
                MofNCompleteColumn,
                Progress,
                TextColumn,
                TimeElapsedColumn,
                TimeRemainingColumn,
            )

            self._progress = Progress(
                TextColumn("[bold]{task.description}"),
                BarColumn(),
                MofNCompleteColumn(),
                TextColumn("acc {task.fields[accuracy]}"),
                TimeElapsedColumn(),
                TextColumn("ETA"),
                TimeRemainingColumn(),
                console=Console(stderr=True),
                transient=False,
            )
            self._progress.__enter__()
        return self

    def start(self, total: int, per_example: float = 1) -> None:
        """``total`` examples of ``per_example`` requests each on average (samples, orderings)."""
        self._total, self._per_example, self._answers, self._done = total, max(1.0, per_example), 0, 0
        if self._progress is not None:
            from rich.markup import escape

            from promptopt.terminal import printable

            self._task = self._progress.add_task(escape(printable(self.label)), total=total, accuracy="–")

    def update(self, state: Any) -> None:
        """After each stored batch: the count and the running accuracy."""
        if self._progress is None or self._task is None:
            return
        self._done = state.done
        accuracy = f"{state.correct / state.scored:.1%}" if state.scored else "–"
        self._progress.update(self._task, completed=self.shown, accuracy=accuracy)

    def answered(self, count: int) -> None:
        """As answers arrive within a batch: the bar moves with them."""
        self._answers += count
        if self._progress is not None and self._task is not None:
            self._progress.update(self._task, completed=self.shown)

    @property
    def shown(self) -> int:
        """Examples shown as done: stored ones, or further by the answers already in."""
        return max(self._done, min(self._total, int(self._answers / self._per_example)))

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        if self._progress is not None:
            self._progress.__exit__(exc_type, exc, tb)


class SearchDisplay:
    """Live search display: phase, round, pool size, best dev score, budget spent, ETA."""

    def __init__(self, *, enabled: bool = True) -> None:
        self.enabled = enabled
        self._progress: Any = None
        self._task: Any = None
        self._phase = "search"
        self._completed = 0

    def __enter__(self) -> SearchDisplay:
        if self.enabled:
            from rich.console import Console
            from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

            self._progress = Progress(
                TextColumn("[bold]{task.fields[phase]}"),
                BarColumn(),
                TextColumn(
                    "round {task.fields[round]} · pool {task.fields[pool]} · best dev {task.fields[best]}"
                ),
                TextColumn("· {task.fields[calls]} calls{task.fields[workers]}"),
                TimeElapsedColumn(),
                TextColumn("ETA"),
                TimeRemainingColumn(),
                console=Console(stderr=True),
            )
            self._progress.__enter__()
            self._task = self._progress.add_task(
                "search", total=1000, phase="search", round=0, pool=0, best="–", calls=0, workers=""
            )
        return self

    def update(self, state: Any) -> None:
        if self._progress is None:
            return
        best = f"{state.best_dev:.1%}" if state.best_dev is not None else "–"
        if state.best_dev is not None and getattr(state, "balanced", False):
            best += " balanced"
        # search: the budget spent; final and test: from 0, moved by phase_fraction
        if state.phase == "search":
            self._completed = int(1000 * (state.budget_fraction or 0.0))
        elif state.phase != self._phase:
            self._completed = 0
        self._enter(state.phase)
        completed = self._completed
        workers = ""
        stats = getattr(state, "pool_stats", None)
        if stats:
            workers = (
                f" · workers {stats.get('workers', 0)} · {stats.get('in_flight', 0)} in flight"
                f" · {stats.get('throughput_rps', 0.0):.0f} req/s"
            )
        self._progress.update(
            self._task, completed=completed, phase=state.phase, round=state.round, pool=state.pool, best=best,
            calls=state.spent.get("calls", 0), workers=workers,
        )  # fmt: skip

    def _enter(self, phase: str) -> None:
        """Each phase's clock and ETA from its own start: a bar that reached its end (the
        final phase's) would otherwise stay "finished", its clock stopped and its ETA 0."""
        if phase != self._phase and self._progress is not None:
            self._progress.reset(self._task, total=1000, completed=0)
        self._phase = phase

    def phase_fraction(self, phase: str, fraction: float) -> None:
        """The share of the final or test phase's requests answered (``search(phase_progress=...)``)."""
        self._enter(phase)
        self._completed = int(1000 * fraction)
        if self._progress is not None:
            self._progress.update(self._task, completed=self._completed, phase=phase)

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        if self._progress is not None:
            self._progress.__exit__(exc_type, exc, tb)


def quiet_library_progress() -> None:
    """``--no-progress`` also silences the progress bars of the libraries promptopt loads
    models with (transformers' "Loading weights", huggingface_hub's downloads, any tqdm):
    set before they are imported, through the environment variables they read."""
    import os

    os.environ["HF_HUB_DISABLE_PROGRESS_BARS"] = "1"
    os.environ["TQDM_DISABLE"] = "1"
    os.environ[QUIET_ENV] = "1"  # promptopt's own notices (a model loading) too
    try:  # already imported: tell it directly
        import sys

        if "transformers" in sys.modules:
            sys.modules["transformers"].utils.logging.disable_progress_bar()
    except Exception:  # noqa: BLE001 - a quieter terminal is not worth an error
        pass


QUIET_ENV = "PROMPTOPT_NO_PROGRESS"


def notice(text: str) -> None:
    """``promptopt: <text>`` on stderr (above a live display): what a long silent step is
    doing, such as a model loading. Silent under ``--no-progress`` (:func:`quiet_library_progress`)
    or with $PROMPTOPT_NO_PROGRESS=1."""
    import os
    import sys

    if os.environ.get(QUIET_ENV) != "1":
        print(f"promptopt: {text}", file=sys.stderr, flush=True)
