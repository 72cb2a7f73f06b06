"""The OpenAI chat-completions wire format, in one place: the request body promptopt
sends for a :class:`~promptopt.types.GenerationRequest`, which HTTP statuses are worth
retrying, how long ``Retry-After`` says to wait, and the server's own error message.

Both clients use it: :class:`~promptopt.backends.openai_backend.OpenAIBackend` (the
``openai`` package, one thread per request) and the pool workers' asyncio client
(:mod:`promptopt.pool.http`). Standard library only.
"""

from __future__ import annotations

import email.utils
import json
from collections.abc import Mapping
from datetime import datetime, timezone
from typing import Any

from promptopt.types import GenerationRequest

#: The chat-completions API accepts at most this many stop sequences.
MAX_STOP_SEQUENCES = 4
#: Sent when a custom endpoint needs no key: the client insists on some value.
PLACEHOLDER_API_KEY = "no-key"  # noqa: S105 - not a secret
#: Statuses worth retrying; every other 4xx is the request's own fault.
RETRYABLE_STATUSES = frozenset({408, 429, 500, 502, 503, 504})
_ERROR_DETAIL_LIMIT = 300


def request_body(model: str, request: GenerationRequest) -> dict[str, Any]:
    """The JSON body of a chat-completions request: greedy requests send no seed, sampled
    ones (``temperature > 0``) send ``seed=sample_index``; at most
    :data:`MAX_STOP_SEQUENCES` stop sequences (the first ones); JSON mode asks for a JSON
    object."""
    body: dict[str, Any] = {
        "model": model,
        "messages": [m.to_dict() for m in request.messages],
        "temperature": request.temperature,
        "max_tokens": request.max_tokens,
    }
    if request.stop:
        body["stop"] = list(request.stop)[:MAX_STOP_SEQUENCES]
    if request.temperature > 0:
        body["seed"] = request.sample_index
    if request.response_format == "json":
        body["response_format"] = json_response_format(request)
    return body


def parse_retry_after(headers: Mapping[str, str], *, now: datetime | None = None) -> float | None:
    """Seconds to wait from ``retry-after-ms``, or ``Retry-After`` as seconds or an HTTP
    date; ``None`` when absent or unreadable. Never negative."""
    lowered = {k.lower(): v for k, v in headers.items()}
    millis = lowered.get("retry-after-ms")
    if millis is not None:
        try:
            return max(0.0, float(millis) / 1000.0)
        except ValueError:
            pass
    value = lowered.get("retry-after")
    if value is None:
        return None
    value = value.strip()
    try:
        seconds = float(value)
    except ValueError:
        pass
    else:
        return max(0.0, seconds) if seconds == seconds else None  # NaN is unreadable
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=timezone.utc)
    return max(0.0, (when - (now or datetime.now(timezone.utc))).total_seconds())


def error_detail(body: Any) -> str | None:
    """The server's own error message, shortened; OpenAI nests it as error.message."""
    if isinstance(body, Mapping):
        inner = body.get("error", body)
        if isinstance(inner, Mapping):
            message = inner.get("message")
            if isinstance(message, str) and message:
                return message[:_ERROR_DETAIL_LIMIT]
        elif isinstance(inner, str) and inner:
            return inner[:_ERROR_DETAIL_LIMIT]
        return None
    if isinstance(body, str) and body:
        return body[:_ERROR_DETAIL_LIMIT]
    return None


def json_response_format(request: GenerationRequest) -> dict[str, Any]:
    """The chat-completions ``response_format`` of a json_mode request: the task's JSON Schema
    where it has one (``json_schema``, not strict: servers that support it constrain to it),
    else any JSON object (``json_object``)."""
    if request.json_schema is None:
        return {"type": "json_object"}
    return {
        "type": "json_schema",
        "json_schema": {"name": "output", "schema": json.loads(request.json_schema)},
    }
