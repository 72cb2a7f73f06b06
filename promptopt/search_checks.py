"""What a search checks before anything is stored: that a resume is given the run's own
task and data, and that a demo teacher has demos to write and is not the task model."""

from __future__ import annotations

from typing import Any

from promptopt.backends import Backend
from promptopt.errors import ConfigError, DataError
from promptopt.policies import get_policy
from promptopt.search_config import SearchConfig
from promptopt.tasks import Task


def check_resumed_task(task: Task, record: Any) -> None:
    """A resume given its task (from Python: ``optimize(task, resume=...)``) must give the run's:
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


def check_teacher(
    config: SearchConfig, task: Task, backend: Backend | None, proposer_backend: Backend | None
) -> None:
    """``demo_teacher="proposer"`` needs a search that bootstraps demos and a proposer
    model other than the task model (else the task model would teach, under another name)."""
    policy = get_policy(config.policy)
    if not policy.bootstraps:
        from promptopt.policies import POLICIES

        users = sorted(name for name, p in POLICIES.items() if p.bootstraps)
        raise ConfigError(
            f"demo_teacher='proposer': the {config.policy} policy bootstraps no demos",
            hint=f"the policies that do: {', '.join(users)}",
        )
    if not policy.bootstraps_in(config, task):
        raise ConfigError(
            f"demo_teacher='proposer': this {config.policy} search bootstraps no demos, so no teacher is asked",
            hint="a space whose demo_selection offers bootstrapped (e.g. --space demos), "
            "or reflect with --reflect-demos K",
        )
    task_model = backend.model_id if backend is not None else config.model
    proposer = proposer_backend.model_id if proposer_backend is not None else config.proposer_model
    if not proposer or proposer in (task_model, config.model):
        raise ConfigError(
            "demo_teacher='proposer' asks the proposer's model for the demos' worked solutions, "
            "but the proposer is the task model",
            hint="name a stronger model: --proposer-model (proposer= in optimize()), or leave the teacher at 'task'",
        )
