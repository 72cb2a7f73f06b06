"""Metrics by name, with "did you mean" on unknown names.

:func:`resolve_metric` accepts every form a user can give:

- a built-in name (``exact_match``) or ``{name: {options}}`` (``{numeric: {tolerance: 0.01}}``);
- ``{llm_judge: {rubric: ..., scale: [1, 5], model: SPEC}}``;
- a reference ``module:function`` or ``path/to/file.py:function`` (runs that code);
- a Python callable ``fn(example, prediction)``;
- a :class:`~promptopt.metrics.base.Metric`.
"""

from __future__ import annotations

import difflib
from collections.abc import Callable, Mapping
from typing import Any

from promptopt.errors import MetricError
from promptopt.metrics.base import Metric
from promptopt.metrics.builtin import BUILTINS, Factory
from promptopt.metrics.reference import load_reference, looks_like_reference, reference_of

# Metrics with heavier needs, imported on first use (a lazy registry entry).
_LAZY = {"llm_judge": "promptopt.metrics.judge", "rg_score": "promptopt.metrics.rg"}


def metric_names() -> list[str]:
    return [*BUILTINS, "llm_judge"]


def _factory(name: str) -> Factory:
    if name in BUILTINS:
        return BUILTINS[name]
    if name in _LAZY:
        import importlib

        factory: Factory = getattr(importlib.import_module(_LAZY[name]), name)
        return factory
    close = difflib.get_close_matches(name, [*BUILTINS, *_LAZY], n=3, cutoff=0.5)
    hint = f"did you mean {' or '.join(close)}? " if close else ""
    raise MetricError(
        f"unknown metric {name!r}; {hint}built-in: {', '.join(metric_names())}, "
        "or module:function / path/to/file.py:function"
    )


def resolve_metric(spec: Any, task: Any = None) -> Metric:
    """A :class:`Metric` from any accepted form (see the module docstring)."""
    if isinstance(spec, Metric):
        return spec
    if isinstance(spec, str):
        text = spec.strip()
        if looks_like_reference(text):
            fn = load_reference(text)
            return Metric(text, fn, text, user_code=True)
        return Metric(text, _factory(text)({}, task), text)
    if isinstance(spec, Mapping):
        if set(spec) in ({"callable", "resumable"}, {"callable", "resumable", "why"}):
            raise MetricError(
                f"this run's metric was the Python callable {spec['callable']}, which cannot be imported "
                f"again ({spec.get('why') or 'not importable'}); pass the callable itself"
            )
        if len(spec) != 1:
            raise MetricError(
                f"a metric mapping has one key, the metric's name, e.g. {{numeric: {{tolerance: 0.01}}}}; "
                f"got keys {', '.join(map(str, spec))}"
            )
        name, options = next(iter(spec.items()))
        if options is None:
            options = {}
        if not isinstance(options, Mapping):
            raise MetricError(f"metric {name}: options must be a mapping, got {type(options).__name__}")
        name = str(name)
        fn = _factory(name)(options, task)
        return Metric(name, fn, getattr(fn, "spec", None) or {name: dict(options)})
    if callable(spec):
        return from_callable(spec)
    raise MetricError(
        f"a metric is a name, a mapping, a module:function reference or a callable, not {type(spec).__name__}"
    )


def from_callable(fn: Callable[..., Any]) -> Metric:
    """A metric from a Python callable. When it can be imported again by reference (a
    module-level function), runs store the reference and can be resumed; otherwise they
    store its name only and refuse to resume, saying why."""
    reference, why = reference_of(fn)
    name = getattr(fn, "__qualname__", None) or type(fn).__name__
    if reference is not None:
        return Metric(reference, fn, reference, user_code=True)
    return Metric(
        name,
        fn,
        {"callable": name, "resumable": False, "why": why},
        user_code=True,
        resumable=False,
        why_not_resumable=why,
    )


def is_user_code(spec: Any) -> bool:
    """Whether a stored metric spec names user code (never imported without consent)."""
    if isinstance(spec, str):
        return looks_like_reference(spec.strip())
    return isinstance(spec, Mapping) and "callable" in spec


def parse_metric_option(text: str | None) -> Any:
    """The ``--metric`` option: a name, a reference, or an inline YAML/JSON mapping
    (``'{numeric: {tolerance: 0.01}}'``)."""
    if text is None:
        return None
    text = text.strip()
    if not text.startswith("{"):
        return text
    import yaml

    try:
        value = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
        raise MetricError(f"--metric {text!r} is not a valid YAML mapping ({problem})") from None
    if not isinstance(value, Mapping):
        raise MetricError(f"--metric {text!r} must be a name, a reference or a mapping")
    return value
