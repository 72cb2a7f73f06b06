"""DSPy interoperability: DSPy's optimizers and programs inside promptopt.

- :class:`~promptopt.dspy_interop.lm.PromptOptLM` — a ``dspy.BaseLM`` that answers
  through a promptopt backend (cache, budget, retries, pool and store apply);
- :func:`candidate_from_dspy` — a saved DSPy predictor as a starting candidate;
  :func:`program_from_candidate` — the other way (``export --format dspy`` writes a file);
- the ``dspy-mipro``, ``dspy-copro`` and ``dspy-bootstrap`` policies live in
  :mod:`promptopt.policies.dspy_policies`, ``dspy-gepa`` in :mod:`promptopt.policies.dspy_gepa`
  (its metric with feedback: :func:`feedback_metric`).

Importing this package does not import DSPy: reading a saved program needs none. The
adapter (``PromptOptLM``) imports it on first use, offline (see :mod:`._env`).
"""

from __future__ import annotations

from typing import Any

from promptopt.dspy_interop._env import import_dspy, quiet_environment
from promptopt.dspy_interop.programs import (
    answer_metric,
    candidate_from_dspy,
    candidate_from_state,
    dspy_example,
    feedback_metric,
    program_from_candidate,
    signature_text,
)

__all__ = [
    "PromptOptLM",
    "answer_metric",
    "candidate_from_dspy",
    "candidate_from_state",
    "dspy_example",
    "feedback_metric",
    "import_dspy",
    "program_from_candidate",
    "quiet_environment",
    "signature_text",
]


def __getattr__(name: str) -> Any:
    if name == "PromptOptLM":
        from promptopt.dspy_interop.lm import PromptOptLM

        return PromptOptLM
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
