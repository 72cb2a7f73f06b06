"""Built-in metrics, each with feedback text that says why an answer lost points.

Every factory takes the metric's options (from ``metric: {name: {...}}``) and the task
(for the gold answer in the task's normal form) and returns ``fn(example, prediction)``.
"""

from __future__ import annotations

import json
import re
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from decimal import Decimal, InvalidOperation
from typing import Any

from promptopt.errors import MetricError
from promptopt.metrics.base import MetricFn, MetricResult, Prediction
from promptopt.types import Example

Factory = Callable[[Mapping[str, Any], Any], MetricFn]


def _short(value: Any, width: int = 60) -> str:
    text = value if isinstance(value, str) else json.dumps(value, ensure_ascii=False)
    text = " ".join(str(text).split())
    return text if len(text) <= width else text[: width - 1] + "…"


def _gold(task: Any, example: Example) -> str:
    return task.target(example) if task is not None else example.target


def _no_answer(prediction: Prediction) -> MetricResult:
    if prediction.finish_reason == "length":
        return MetricResult(0.0, "no answer found: the output was cut off at the token limit")
    return MetricResult(0.0, "no answer found in the output")


def _options(name: str, options: Mapping[str, Any], allowed: Sequence[str]) -> None:
    unknown = sorted(set(options) - set(allowed))
    if unknown:
        hint = f"; it takes {', '.join(allowed)}" if allowed else "; it takes no options"
        raise MetricError(f"metric {name}: unknown option(s) {', '.join(unknown)}{hint}")


def exact_match(options: Mapping[str, Any], task: Any) -> MetricFn:
    """1 if the extracted answer equals the gold answer (both in the task's normal form)."""
    _options("exact_match", options, ())

    def score(example: Example, prediction: Prediction) -> MetricResult:
        gold = _gold(task, example)
        if prediction.answer is None:
            return _no_answer(prediction)
        if prediction.answer == gold:
            return MetricResult(1.0, "")
        return MetricResult(0.0, f"expected {_short(gold)}, got {_short(prediction.answer)}")

    return score


def _number(text: str | None) -> Decimal | None:
    if text is None:
        return None
    from promptopt.tasks.extract import normalize_number

    normal = normalize_number(text)
    if normal is None:
        return None
    try:
        return Decimal(normal)
    except InvalidOperation:
        return None


def numeric(options: Mapping[str, Any], task: Any) -> MetricFn:
    """1 if the answer is within ``tolerance`` (absolute, default 0) or ``relative``
    (a fraction of the gold value) of the gold number."""
    _options("numeric", options, ("tolerance", "relative"))
    try:
        absolute = Decimal(str(options.get("tolerance", 0)))
        relative = Decimal(str(options.get("relative", 0)))
    except InvalidOperation:
        raise MetricError("metric numeric: tolerance and relative must be numbers") from None
    if absolute < 0 or relative < 0:
        raise MetricError("metric numeric: tolerance and relative must not be negative")

    def score(example: Example, prediction: Prediction) -> MetricResult:
        gold = _number(example.target)
        if gold is None:
            raise ValueError(f"gold answer {example.target!r} is not a number")
        got = _number(prediction.answer)
        if got is None:
            return (
                _no_answer(prediction)
                if prediction.answer is None
                else MetricResult(0.0, f"expected a number ({gold}), got {_short(prediction.answer)}")
            )
        allowed = max(absolute, relative * abs(gold))
        if abs(got - gold) <= allowed:
            return MetricResult(1.0, "")
        return MetricResult(0.0, f"expected {gold}, got {got} (off by {abs(got - gold)})")

    return score


def _norm(text: str) -> str:
    return " ".join(text.strip().lower().split()).strip(" .,:;!?\"'`*")


def choice(options: Mapping[str, Any], task: Any) -> MetricFn:
    """Classification over a label set: the answer must be one of ``labels`` (compared
    case-insensitively) and equal the gold label. An answer outside the set scores 0
    with feedback naming the set."""
    _options("choice", options, ("labels",))
    labels = options.get("labels")
    if labels is not None and (not isinstance(labels, list) or not labels):
        raise MetricError("metric choice: labels must be a non-empty list")
    known = {_norm(str(label)): str(label) for label in labels or ()}

    def score(example: Example, prediction: Prediction) -> MetricResult:
        if prediction.answer is None:
            return _no_answer(prediction)
        answer, gold = _norm(prediction.answer), _norm(example.target)
        if known and answer not in known:
            # a label mentioned inside a longer answer counts when it is the only one
            found = [k for k in known if re.search(rf"(?<!\w){re.escape(k)}(?!\w)", answer)]
            if len(found) != 1:
                return MetricResult(
                    0.0,
                    f"answer {_short(prediction.answer)} is not one of the labels {', '.join(known.values())}",
                )
            answer = found[0]
        if answer == gold:
            return MetricResult(1.0, "")
        return MetricResult(0.0, f"expected label {example.target}, got {known.get(answer, answer)}")

    return score


def contains(options: Mapping[str, Any], task: Any) -> MetricFn:
    """1 if the output (``field: raw``, default) or the answer (``field: answer``) contains
    the gold text; ``case_sensitive`` defaults to false. A gold of several ``|``-separated
    alternatives passes when any is contained (``all: true``: every one)."""
    _options("contains", options, ("field", "case_sensitive", "all", "separator"))
    field = options.get("field", "raw")
    if field not in ("raw", "answer"):
        raise MetricError("metric contains: field must be raw or answer")
    sensitive = bool(options.get("case_sensitive", False))
    need_all = bool(options.get("all", False))
    separator = str(options.get("separator", "|"))

    def score(example: Example, prediction: Prediction) -> MetricResult:
        text = prediction.raw if field == "raw" else prediction.answer
        if text is None:
            return _no_answer(prediction)
        wanted = [w.strip() for w in example.target.split(separator) if w.strip()] or [example.target]
        haystack = text if sensitive else text.lower()
        found = [w for w in wanted if (w if sensitive else w.lower()) in haystack]
        missing = [w for w in wanted if w not in found]
        ok = not missing if need_all else bool(found)
        if ok:
            return MetricResult(1.0, "")
        return MetricResult(0.0, f"{'answer' if field == 'answer' else 'output'} does not contain "
                            f"{', '.join(_short(m, 30) for m in missing)}")  # fmt: skip

    return score


def _tokens(text: str) -> list[str]:
    return re.findall(r"\w+", text.lower())


def f1(predicted: Sequence[str], gold: Sequence[str]) -> float:
    """Token-overlap F1 (SQuAD): 1 when both are empty."""
    if not predicted or not gold:
        return float(predicted == gold)
    common = sum((Counter(predicted) & Counter(gold)).values())
    if common == 0:
        return 0.0
    precision, recall = common / len(predicted), common / len(gold)
    return 2 * precision * recall / (precision + recall)


def token_f1(options: Mapping[str, Any], task: Any) -> MetricFn:
    """Word-overlap F1 between the answer and the gold text (partial credit)."""
    _options("token_f1", options, ())

    def score(example: Example, prediction: Prediction) -> MetricResult:
        if prediction.answer is None:
            return _no_answer(prediction)
        got, gold = _tokens(prediction.answer), _tokens(example.target)
        value = f1(got, gold)
        if value == 1.0:
            return MetricResult(1.0, "")
        missing = [t for t in dict.fromkeys(gold) if t not in got][:5]
        extra = [t for t in dict.fromkeys(got) if t not in gold][:5]
        parts = [f"F1 {value:.2f}"]
        if missing:
            parts.append(f"missing {' '.join(missing)}")
        if extra:
            parts.append(f"extra {' '.join(extra)}")
        return MetricResult(value, "; ".join(parts))

    return score


def regex(options: Mapping[str, Any], task: Any) -> MetricFn:
    """1 if ``pattern`` matches the output (``field: raw``, default) or the answer;
    ``{target}`` in the pattern stands for the escaped gold text. Without a pattern the
    gold text itself is the pattern."""
    _options("regex", options, ("pattern", "field", "flags"))
    pattern = options.get("pattern")
    field = options.get("field", "raw")
    if field not in ("raw", "answer"):
        raise MetricError("metric regex: field must be raw or answer")
    flags = re.IGNORECASE if "i" in str(options.get("flags", "i")) else 0
    if pattern is not None:
        try:
            re.compile(str(pattern).replace("{target}", "x"), flags)
        except re.error as exc:
            raise MetricError(f"metric regex: invalid pattern {pattern!r}: {exc}") from None

    def score(example: Example, prediction: Prediction) -> MetricResult:
        text = prediction.raw if field == "raw" else prediction.answer
        if text is None:
            return _no_answer(prediction)
        source = (
            str(pattern).replace("{target}", re.escape(example.target))
            if pattern is not None
            else example.target
        )
        if re.search(source, text, flags):
            return MetricResult(1.0, "")
        return MetricResult(0.0, f"no match for /{_short(source, 40)}/")

    return score


def json_fields(options: Mapping[str, Any], task: Any) -> MetricFn:
    """Field-by-field comparison of the parsed JSON object with the gold object (the
    example's target, JSON text). ``fields`` limits the comparison (default: every gold
    field); ``mode`` is ``exact`` (normalised text equality, default) or ``f1`` (token
    F1 per field); ``weights`` maps fields to weights. The score is the weighted mean;
    the feedback names each field that missed."""
    _options("json_fields", options, ("fields", "mode", "weights"))
    fields = options.get("fields")
    mode = options.get("mode", "exact")
    if mode not in ("exact", "f1"):
        raise MetricError("metric json_fields: mode must be exact or f1")
    weights = options.get("weights") or {}
    if not isinstance(weights, Mapping):
        raise MetricError("metric json_fields: weights must map field names to numbers")

    def score(example: Example, prediction: Prediction) -> MetricResult:
        try:
            gold = json.loads(example.target)
        except json.JSONDecodeError as exc:
            raise ValueError(f"gold answer is not JSON ({exc.msg})") from None
        if not isinstance(gold, Mapping):
            raise ValueError("gold answer is not a JSON object")
        got = prediction.parsed
        if got is None and prediction.answer is not None:
            try:
                got = json.loads(prediction.answer)
            except json.JSONDecodeError:
                got = None
        if not isinstance(got, Mapping):
            if prediction.answer is None:
                return MetricResult(0.0, "no JSON object found in the output")
            return MetricResult(0.0, f"answer is not a JSON object: {_short(prediction.answer)}")
        names = list(fields) if fields else list(gold)
        total = 0.0
        earned = 0.0
        problems: list[str] = []
        for name in names:
            weight = float(weights.get(name, 1.0))
            total += weight
            if name not in got:
                problems.append(f"field `{name}` missing")
                continue
            expected, value = _norm_json(gold.get(name)), _norm_json(got[name])
            part = f1(_tokens(value), _tokens(expected)) if mode == "f1" else float(value == expected)
            earned += weight * part
            if part < 1.0:
                problems.append(
                    f"field `{name}`: expected {_short(gold.get(name), 30)}, got {_short(got[name], 30)}"
                )
        return MetricResult(earned / total if total else 1.0, "; ".join(problems))

    return score


def _norm_json(value: Any) -> str:
    if isinstance(value, str):
        return _norm(value)
    if isinstance(value, float) and value == int(value):
        value = int(value)
    return json.dumps(value, sort_keys=True, ensure_ascii=False).lower()


BUILTINS: dict[str, Factory] = {
    "exact_match": exact_match,
    "numeric": numeric,
    "choice": choice,
    "contains": contains,
    "token_f1": token_f1,
    "regex": regex,
    "json_fields": json_fields,
}
