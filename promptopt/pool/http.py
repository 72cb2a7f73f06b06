"""An asyncio client for OpenAI-compatible chat completions, for pool workers.

Why not :class:`~promptopt.backends.openai_backend.OpenAIBackend` inside the workers: it
runs one thread per request in flight and the ``openai`` client costs a few milliseconds
of CPU per request, which caps one process at a few hundred requests per second. A worker
here keeps many requests in flight on one event loop over a keep-alive connection pool
(the HTTP library the ``openai`` package itself depends on), and turns every outcome into
a :class:`Completion` with the same meaning as ``OpenAIBackend``: 408/429/5xx, timeouts,
connection failures and malformed bodies are retryable, ``Retry-After`` is carried in
``retry_after``, and the key never appears in an error text.
"""

from __future__ import annotations

import json
import os
import time
from dataclasses import dataclass
from typing import Any

from promptopt.backends.openai_backend import (
    MAX_STOP_SEQUENCES,
    PLACEHOLDER_API_KEY,
    RETRYABLE_STATUSES,
    parse_retry_after,
)
from promptopt.types import Completion, GenerationRequest

_DETAIL_LIMIT = 300


@dataclass(frozen=True)
class ChatEndpoint:
    """Where and how a worker sends requests. Holds the *name* of the key's environment
    variable, never the key."""

    model: str
    base_url: str
    api_key_env: str = "OPENAI_API_KEY"
    timeout: float = 60.0
    max_connections: int = 64


def request_body(model: str, request: GenerationRequest) -> dict[str, Any]:
    """The JSON body OpenAIBackend sends for ``request`` (greedy: no seed; sampled:
    ``seed=sample_index``; at most four stop sequences)."""
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
    return body


class AsyncChatClient:
    """Sends chat-completions requests concurrently from one event loop."""

    def __init__(self, endpoint: ChatEndpoint) -> None:
        import httpx2

        self.endpoint = endpoint
        self._httpx = httpx2
        self._secret = os.environ.get(endpoint.api_key_env) or ""
        self._url = endpoint.base_url.rstrip("/") + "/chat/completions"
        self._client = httpx2.AsyncClient(
            headers={"Authorization": f"Bearer {self._secret or PLACEHOLDER_API_KEY}"},
            timeout=endpoint.timeout,
            limits=httpx2.Limits(
                max_connections=endpoint.max_connections, max_keepalive_connections=endpoint.max_connections
            ),
            trust_env=False,
        )

    async def complete(self, request: GenerationRequest) -> Completion:
        httpx2 = self._httpx
        started = time.perf_counter()
        try:
            response = await self._client.post(self._url, json=request_body(self.endpoint.model, request))
        except httpx2.TimeoutException:
            return self._failure(f"request timed out after {self.endpoint.timeout:g}s", True, started)
        except httpx2.TransportError as exc:
            return self._failure(f"connection failed: {type(exc).__name__}: {exc}", True, started)
        if response.status_code != 200:
            retryable = response.status_code in RETRYABLE_STATUSES
            detail = _detail(response)
            return self._failure(
                f"HTTP {response.status_code}" + (f": {detail}" if detail else ""),
                retryable,
                started,
                parse_retry_after(response.headers) if retryable else None,
            )
        try:
            payload = response.json()
            choice = payload["choices"][0]
            text = choice["message"].get("content")
            usage = payload.get("usage") or {}
            if text is not None and not isinstance(text, str):
                raise TypeError(f"message content is {type(text).__name__}, not text")
            return Completion(
                text=text or "",
                tokens_in=int(usage.get("prompt_tokens") or 0),
                tokens_out=int(usage.get("completion_tokens") or 0),
                finish_reason=str(choice.get("finish_reason") or "unknown"),
                latency_s=time.perf_counter() - started,
            )
        except (ValueError, KeyError, IndexError, TypeError, AttributeError) as exc:
            return self._failure(f"malformed response: {type(exc).__name__}: {exc}", True, started)

    def _failure(
        self, message: str, retryable: bool, started: float, retry_after: float | None = None
    ) -> Completion:
        if self._secret:
            message = message.replace(self._secret, "[redacted]")
        return Completion(
            text="",
            finish_reason="error",
            latency_s=time.perf_counter() - started,
            error=message,
            retryable=retryable,
            retry_after=retry_after,
        )

    async def aclose(self) -> None:
        await self._client.aclose()


def _detail(response: Any) -> str:
    try:
        body = response.json()
    except (ValueError, json.JSONDecodeError):
        return (response.text or "")[:_DETAIL_LIMIT]
    error = body.get("error", body) if isinstance(body, dict) else body
    if isinstance(error, dict):
        return str(error.get("message") or "")[:_DETAIL_LIMIT]
    return str(error)[:_DETAIL_LIMIT]
