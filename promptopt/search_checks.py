"""What a search checks before anything is stored: that a resume is given the run's own
task and data."""

from __future__ import annotations

from typing import Any

from promptopt.errors import ConfigError, DataError
from promptopt.tasks import Task


def check_resumed_task(task: Task, record: Any) -> None:
    """A resume given its task (from Python, or the CLI's --data-dir) must give the run's:
    the same name and, where the run recorded it, the same data (else the run would end
    with scores of two datasets)."""
    if task.name != record.task:
        raise ConfigError(
            f"run {record.id} searched task {record.task!r}, not {task.name!r}",
            hint="resume with the run's task, or leave the task out to load the one the run recorded",
        )
    if record.dataset_hash and task.dataset_hash != record.dataset_hash:
        raise DataError(
            f"task {task.name}: the data given is not the data run {record.id} used "
            f"(dataset hash {task.dataset_hash}, the run's {record.dataset_hash})",
            hint="resume with the data the run was made with",
        )
