"""One error hierarchy for everything promptopt raises on purpose.

The CLI turns any :class:`PromptOptError` into a one-paragraph message and exit code 2;
anything else is a bug and keeps its traceback.
"""

from __future__ import annotations


class PromptOptError(Exception):
    """Root of every error promptopt raises deliberately.

    ``hint`` is an optional second sentence telling the user what to do next. ``run_id``
    is the stored run the error stopped, where there is one (a search raising after its
    run was stored sets it): the run to resume once the cause is fixed.
    """

    def __init__(self, message: str, *, hint: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.hint = hint
        self.run_id: str | None = None

    def __str__(self) -> str:
        return f"{self.message}\n  hint: {self.hint}" if self.hint else self.message


class ConfigError(PromptOptError):
    """A bad option, file or value supplied by the user."""


class DataError(PromptOptError):
    """A dataset that cannot be found or parsed; the message names file and line."""


class TaskError(PromptOptError):
    """An unknown task or a malformed task definition."""


class TemplateError(PromptOptError):
    """A prompt template that references a missing field or lacks a required placeholder."""


class StoreError(PromptOptError):
    """The database cannot be opened, written or is of another schema version."""


class SchemaVersionError(StoreError):
    """The database was written by another promptopt schema version."""


class MissingDependencyError(PromptOptError):
    """An optional dependency is not installed; the hint says which extra to install."""


class ModelError(PromptOptError):
    """A model cannot be found, assembled, verified or loaded."""


class BackendError(PromptOptError):
    """A backend call failed.

    ``retryable`` says whether trying again may succeed (rate limits, 5xx, timeouts);
    ``retry_after`` is the server's requested wait in seconds, when it named one.
    """

    def __init__(
        self,
        message: str,
        *,
        retryable: bool = False,
        retry_after: float | None = None,
        hint: str | None = None,
    ) -> None:
        super().__init__(message, hint=hint)
        self.retryable = retryable
        self.retry_after = retry_after


class BudgetExceeded(PromptOptError):
    """A configured budget (calls, tokens, minutes, cost) has been spent."""


class MetricError(ConfigError):
    """A metric that cannot be found, loaded or configured, that returned a bad score, or
    that raised while scoring (the message names the example)."""


class RunInterruptedError(PromptOptError):
    """The run was stopped by something outside it (not by its own inputs); what it
    stored stays, and it continues with ``--resume``. The run is marked interrupted."""


class ClusterLostError(RunInterruptedError):
    """The Ray cluster a search joined stopped answering (its head is gone)."""
