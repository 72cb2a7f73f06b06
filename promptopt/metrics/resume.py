"""Which metric a resumed run scores with, and when promptopt refuses to guess.

A run stores its metric's *spec*: a built-in's name and options, or the reference of user
code. User code is never imported from the store on promptopt's own initiative: loading it
runs it, so a resume needs the user to name the metric again, and it must be the same one.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from promptopt.errors import MetricError
from promptopt.metrics.registry import is_user_code, resolve_metric

if TYPE_CHECKING:
    from promptopt.tasks import Task


def resume_metric(config: Any, run_id: str, task: Task | None, metric: Any) -> Task:
    """The task of a resumed run, scored by the run's metric. A built-in metric is rebuilt
    from the stored spec; user code is imported only when the user names it again (and
    it must be the stored one); a callable that cannot be imported refuses the resume."""
    from promptopt.tasks import get_task

    stored = config.metric
    if task is None:
        task = get_task(config.task, config.data_dir)
    if isinstance(stored, Mapping) and stored.get("resumable") is False:
        raise MetricError(
            f"run {run_id} cannot be resumed: its metric {stored.get('callable')} was a Python callable that "
            f"cannot be imported again ({stored.get('why') or 'not importable'}), so promptopt cannot be sure "
            "it scores the rest of the run as it scored the start",
            hint="define the metric as a module-level function `def my_metric(example, prediction): ...` in a "
            "module or file (not a lambda or closure), then start a new run; runs with such a metric resume",
        )
    carried = task.__dict__.get("metric")  # a metric the caller's task already holds (the Python API)
    if metric is None and carried is not None:
        if carried.spec == stored:
            return task  # the very metric, e.g. a judge with its backend object, or the same function
        if carried.user_code:
            metric = carried  # the user named a function: it must be the run's (checked below)
    if metric is None and stored is not None and is_user_code(stored):
        raise MetricError(
            f"run {run_id} scores with the user metric {stored}; resuming imports and runs that code, so "
            "promptopt does not do it on its own",
            hint=f"name it again to resume: --metric {stored} (Python: metric={stored!r})",
        )
    if metric is None:
        return task if stored is None else task.with_metric(stored)
    named = resolve_metric(metric, task)
    if stored is not None and named.spec != stored:
        raise MetricError(
            f"run {run_id} was scored with metric {stored}, not {named.spec}; resuming with another metric "
            "would mix two kinds of score in one run",
            hint="resume with the run's own metric, or start a new run",
        )
    return task.with_metric(named)
