"""promptopt: automatic prompt optimization.

The Python API mirrors the command line:

>>> import promptopt
>>> report = promptopt.evaluate(task="gsm-symbolic", prompt="Solve the math word problem.",
...                             backend="fake", split="dev", limit=5)   # doctest: +SKIP
"""

from __future__ import annotations

from importlib.metadata import PackageNotFoundError, version
from typing import TYPE_CHECKING, Any

from promptopt.errors import PromptOptError
from promptopt.types import Candidate, Completion, EvalResult, Example, GenerationRequest, Message

try:
    __version__ = version("promptopt")
except PackageNotFoundError:  # running from a source tree without installation
    __version__ = "0.0.0+unknown"

if TYPE_CHECKING:
    from promptopt.controller import PreparedSearch, SearchConfig, prepare_search, search
    from promptopt.evaluation import EvalReport, evaluate, make_candidate
    from promptopt.export import load
    from promptopt.metrics import MetricResult, Prediction
    from promptopt.optimization import optimize
    from promptopt.session import ModelStack, Session
    from promptopt.tasks import Task, get_task, list_tasks

__all__ = [
    "Candidate", "Completion", "EvalReport", "EvalResult", "Example", "GenerationRequest", "Message",
    "MetricResult", "ModelStack", "Prediction", "PreparedSearch", "PromptOptError", "SearchConfig", "Session", "Task",
    "evaluate", "get_task", "list_tasks", "load", "make_candidate", "optimize", "prepare_search", "search",
    "__version__",
]  # fmt: skip

_LAZY = {
    "evaluate": "promptopt.evaluation",
    "make_candidate": "promptopt.evaluation",
    "EvalReport": "promptopt.evaluation",
    "get_task": "promptopt.tasks",
    "list_tasks": "promptopt.tasks",
    "Task": "promptopt.tasks",
    "load": "promptopt.export",
    "search": "promptopt.controller",
    "optimize": "promptopt.optimization",
    "MetricResult": "promptopt.metrics",
    "Prediction": "promptopt.metrics",
    "SearchConfig": "promptopt.controller",
    "prepare_search": "promptopt.controller",
    "PreparedSearch": "promptopt.controller",
    "Session": "promptopt.session",
    "ModelStack": "promptopt.session",
}


def __getattr__(name: str) -> Any:
    # Keep `import promptopt` light: the API pulls in SQLAlchemy and the task registry.
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'promptopt' has no attribute {name!r}")
