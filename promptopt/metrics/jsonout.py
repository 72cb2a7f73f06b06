"""Structured outputs: find the JSON object in a model's output and check it.

The ``json`` extractor looks for a fenced block (```json ... ```), then the first
balanced ``{...}`` (or ``[...]``) that parses. With a JSON Schema (the task's
``json_schema:``) the object is validated; a parse or schema failure becomes the
prediction's ``error``, which scores 0 with that text as feedback.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from promptopt.errors import MetricError
from promptopt.metrics.base import Prediction
from promptopt.types import canonical_json

_FENCE_RE = re.compile(r"```(?:json|JSON)?\s*\n?(.*?)```", re.DOTALL)


def find_json(text: str) -> tuple[Any, str | None]:
    """``(value, error)``: the JSON value in ``text`` or None with what was wrong."""
    candidates = [m.group(1).strip() for m in _FENCE_RE.finditer(text)]
    candidates += _balanced(text)
    first_error: str | None = None
    for candidate in candidates:
        try:
            return json.loads(candidate), None
        except json.JSONDecodeError as exc:
            first_error = first_error or f"invalid JSON: {exc.msg} at line {exc.lineno} column {exc.colno}"
    return None, first_error or "no JSON object found in the output"


def json_start(text: str) -> int:
    """Where the last JSON value in ``text`` begins (a fenced block's fence, or a balanced
    top-level ``{...}``/``[...]``), or -1: what a worked solution before it ends at."""
    last = max((text.rfind(span) for span in _balanced(text)), default=-1)
    for fence in _FENCE_RE.finditer(text):
        if fence.start() <= last < fence.end():  # the value is fenced: the fence opens it
            return fence.start()
    return last


def _balanced(text: str) -> list[str]:
    """Every top-level ``{...}``/``[...]`` span whose brackets balance (strings respected)."""
    spans: list[str] = []
    depth, start, in_string, escaped = 0, -1, False, False
    for index, char in enumerate(text):
        if in_string:
            if escaped:
                escaped = False
            elif char == "\\":
                escaped = True
            elif char == '"':
                in_string = False
            continue
        if char == '"' and depth:
            in_string = True
        elif char in "{[":
            if depth == 0:
                start = index
            depth += 1
        elif char in "}]" and depth:
            depth -= 1
            if depth == 0:
                spans.append(text[start : index + 1])
    if depth and start >= 0:  # unbalanced tail: parse it anyway to report the error
        spans.append(text[start:])
    return [s for s in spans if s.startswith("{")] + [s for s in spans if s.startswith("[")]


def load_schema(value: Any, base_dir: Path | None = None) -> Mapping[str, Any]:
    """A JSON Schema from a mapping or a path to a JSON/YAML file; checked to be valid."""
    if isinstance(value, str):
        path = Path(value).expanduser()
        if not path.is_absolute() and base_dir is not None:
            path = base_dir / path
        try:
            text = path.read_text(encoding="utf-8")
        except OSError as exc:
            raise MetricError(f"json_schema: cannot read {path} ({exc.strerror})") from None
        import yaml

        value = json.loads(text) if path.suffix == ".json" else yaml.safe_load(text)
    if not isinstance(value, Mapping):
        raise MetricError("json_schema must be a JSON Schema object (a mapping) or a path to one")
    validator = _validator_class()
    try:
        validator.check_schema(value)
    except Exception as exc:
        raise MetricError(f"json_schema is not a valid JSON Schema: {getattr(exc, 'message', exc)}") from None
    return dict(value)


def _validator_class() -> Any:
    try:
        import jsonschema
    except ImportError:
        from promptopt.errors import MissingDependencyError

        raise MissingDependencyError(
            "json_schema needs the 'jsonschema' package", hint="pip install jsonschema"
        ) from None
    return jsonschema.Draft202012Validator


def schema_problem(value: Any, schema: Mapping[str, Any]) -> str | None:
    """The first schema violation in words (with its path), or None."""
    validator = _validator_class()(schema)
    errors = sorted(validator.iter_errors(value), key=lambda e: list(e.absolute_path))
    if not errors:
        return None
    error = errors[0]
    where = "/".join(str(p) for p in error.absolute_path)
    return f"schema: {error.message}" + (f" (at {where})" if where else "")


def predict_json(
    raw: str, schema: Mapping[str, Any] | None = None, finish_reason: str = "stop"
) -> Prediction:
    """The prediction of a JSON task: canonical JSON text as the answer (so that votes and
    the store compare objects, not formatting), the value as ``parsed``."""
    value, error = find_json(raw)
    if error is not None:
        if finish_reason == "length":
            error += " (the output was cut off at the token limit)"
        return Prediction(raw, None, None, error, finish_reason)
    answer = canonical_json(value)
    if schema is not None:
        problem = schema_problem(value, schema)
        if problem is not None:
            return Prediction(raw, answer, value, problem, finish_reason)
    return Prediction(raw, answer, value, None, finish_reason)
