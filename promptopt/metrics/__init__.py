"""Metrics: how an answer is scored, and why it lost points.

``metric(example, prediction) -> float | MetricResult(score, feedback)``. Built-in
metrics are named (``exact_match``, ``numeric``, ``choice``, ``contains``, ``token_f1``,
``regex``, ``json_fields``, ``llm_judge``); user metrics are Python callables or
``module:function`` / ``path/to/file.py:function`` references. See ``docs/metrics.md``.
"""

from __future__ import annotations

from promptopt.metrics.base import Metric, MetricContext, MetricFn, MetricResult, Prediction, check_score
from promptopt.metrics.registry import (
    from_callable,
    is_user_code,
    metric_names,
    parse_metric_option,
    resolve_metric,
)

__all__ = [
    "Metric",
    "MetricContext",
    "MetricFn",
    "MetricResult",
    "Prediction",
    "check_score",
    "from_callable",
    "is_user_code",
    "metric_names",
    "parse_metric_option",
    "resolve_metric",
]
