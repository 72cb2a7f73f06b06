"""The calibration prior an export carries.

A ``contextual`` or ``position`` calibration divides out a prior the evaluation
estimated once per prompt (content-free inputs; permuted dev items). A loaded prompt has
no dev items, and asking the model again on every ``run()`` would cost calls and, for
``position``, estimate the prior from whatever questions the call holds. So the export
writes the prior down, read from the run's response cache (the requests the evaluation
made; no model is called), and :meth:`LoadedPrompt.run` uses it as it is.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from promptopt.backends.base import Backend
from promptopt.types import Candidate, Completion, GenerationRequest

FIXED = ("contextual", "position")  # the calibrations whose prior is fixed per prompt


class CacheOnlyBackend(Backend):
    """Answers nothing itself: under the response cache, every request the cache does
    not hold fails, so a prior is built from stored answers only."""

    def __init__(self, model_id: str) -> None:
        self._model_id = model_id

    @property
    def model_id(self) -> str:
        return self._model_id

    def can_score_labels(self) -> bool:
        return True

    def generate(self, requests: Sequence[GenerationRequest]) -> list[Completion]:
        return [Completion(text="", error="not in the response cache") for _ in requests]


def exported_priors(store: Any, task: Any, candidate: Candidate, model_id: str) -> dict[str, Any]:
    """The prior fields of ``candidate``'s export (``{}`` when its calibration has no fixed
    prior, or the cache of ``store`` for ``model_id`` does not hold its requests): see
    :func:`promptopt.bias.labels.fixed_priors`."""
    if candidate.calibration not in FIXED:
        return {}
    from promptopt.bias.labels import estimate_fixed_priors, fixed_priors
    from promptopt.executor import Executor
    from promptopt.session import ModelStack

    executor = Executor(task, ModelStack(CacheOnlyBackend(model_id), store, max_attempts=1).backend)
    estimate_fixed_priors(executor, candidate)
    return fixed_priors(executor, candidate)
