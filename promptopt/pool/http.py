"""An asyncio client for OpenAI-compatible chat completions, for pool workers.

Why not :class:`~promptopt.backends.openai_backend.OpenAIBackend` inside the workers: it
runs one thread per request in flight and the ``openai`` client costs a few milliseconds
of CPU per request, which caps one process at a few hundred requests per second. A worker
here keeps many requests in flight on one event loop over a keep-alive connection pool
(:class:`RawHttpClient`, a lean HTTP/1.1 client), and turns every outcome into
a :class:`Completion` with the same meaning as ``OpenAIBackend``: 408/429/5xx, timeouts,
connection failures and malformed bodies are retryable, ``Retry-After`` is carried in
``retry_after``, and the key never appears in an error text.
"""

from __future__ import annotations

import asyncio
import json
import os
import ssl
import time
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

from promptopt.backends.openai_wire import (
    PLACEHOLDER_API_KEY,
    RETRYABLE_STATUSES,
    error_detail,
    parse_retry_after,
    request_body,
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


class HttpError(Exception):
    """The connection failed or the reply was not HTTP (retryable)."""


class _Response:
    def __init__(self, status: int, headers: dict[str, str], body: bytes) -> None:
        self.status_code = status
        self.headers = headers
        self.body = body
        self.elapsed_s = 0.0  # from sending to the end of the reply (not waiting for a slot)

    def json(self) -> Any:
        return json.loads(self.body)

    @property
    def text(self) -> str:
        return self.body.decode("utf-8", "replace")


class RawHttpClient:
    """A small HTTP/1.1 client on asyncio streams with a keep-alive connection pool.

    It exists for speed: a general client costs over a millisecond of CPU per request,
    which is the whole budget of a worker at several hundred requests per second. It
    sends JSON POSTs and reads ``Content-Length`` or chunked replies; no proxies, no
    compression, no redirects (a chat-completions API needs none of them)."""

    def __init__(
        self, base_url: str, headers: dict[str, str], *, timeout: float, max_connections: int
    ) -> None:
        parts = urlsplit(base_url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError(f"not an http(s) URL: {base_url!r}")
        self._ssl = ssl.create_default_context() if parts.scheme == "https" else None
        self._host = parts.hostname
        self._port = parts.port or (443 if self._ssl else 80)
        self._path = parts.path.rstrip("/")
        default_port = self._port == (443 if self._ssl else 80)
        host_header = self._host if default_port else f"{self._host}:{self._port}"
        self._head = "".join(f"{k}: {v}\r\n" for k, v in {"Host": host_header, **headers}.items())
        self._timeout = timeout
        self._idle: list[tuple[asyncio.StreamReader, asyncio.StreamWriter]] = []
        self._slots = asyncio.Semaphore(max_connections)

    async def post_json(self, path: str, payload: Any) -> _Response:
        body = json.dumps(payload).encode("utf-8")
        request = (
            f"POST {self._path}{path} HTTP/1.1\r\n{self._head}"
            f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n\r\n"
        ).encode("latin-1") + body
        async with self._slots:
            started = time.perf_counter()
            response = await asyncio.wait_for(self._exchange(request), self._timeout)
            response.elapsed_s = time.perf_counter() - started
            return response

    async def _exchange(self, request: bytes) -> _Response:
        for attempt in range(2):
            reused = bool(self._idle)
            reader, writer = self._idle.pop() if reused else await self._connect()
            try:
                writer.write(request)
                await writer.drain()
                response, keep = await _read_response(reader)
            except (OSError, asyncio.IncompleteReadError, ValueError) as exc:
                writer.close()
                if reused and attempt == 0:
                    continue  # the server closed an idle keep-alive connection: use a new one
                raise HttpError(f"{type(exc).__name__}: {exc}") from exc
            except BaseException:  # cancelled (timeout): the connection is in an unknown state
                writer.close()
                raise
            if keep:
                self._idle.append((reader, writer))
            else:
                writer.close()
            return response
        raise AssertionError("unreachable")

    async def _connect(self) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
        try:
            return await asyncio.open_connection(self._host, self._port, ssl=self._ssl)
        except OSError as exc:
            raise HttpError(f"cannot connect to {self._host}:{self._port}: {exc}") from exc

    async def aclose(self) -> None:
        while self._idle:
            self._idle.pop()[1].close()


async def _read_response(reader: asyncio.StreamReader) -> tuple[_Response, bool]:
    head = await reader.readuntil(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    version, status, *_ = lines[0].split(" ", 2)
    headers: dict[str, str] = {}
    for line in lines[1:]:
        if line:
            name, _, value = line.partition(":")
            headers[name.strip().lower()] = value.strip()
    if "content-length" in headers:
        body = await reader.readexactly(int(headers["content-length"]))
    elif headers.get("transfer-encoding", "").lower() == "chunked":
        parts = []
        while True:
            size = int((await reader.readuntil(b"\r\n")).split(b";", 1)[0].strip() or b"0", 16)
            if size == 0:
                while (await reader.readuntil(b"\r\n")) != b"\r\n":
                    pass
                break
            parts.append(await reader.readexactly(size))
            await reader.readexactly(2)
        body = b"".join(parts)
    else:
        body = await reader.read()
        return _Response(int(status), headers, body), False
    keep = headers.get("connection", "").lower() != "close" and version != "HTTP/1.0"
    return _Response(int(status), headers, body), keep


class AsyncChatClient:
    """Sends chat-completions requests concurrently from one event loop."""

    def __init__(self, endpoint: ChatEndpoint, secret: str | None = None) -> None:
        self.endpoint = endpoint
        self._secret = secret or os.environ.get(endpoint.api_key_env) or ""
        self._client = RawHttpClient(
            endpoint.base_url,
            {"Authorization": f"Bearer {self._secret or PLACEHOLDER_API_KEY}", "Accept": "application/json"},
            timeout=endpoint.timeout,
            max_connections=endpoint.max_connections,
        )

    async def complete(self, request: GenerationRequest) -> Completion:
        started = time.perf_counter()
        try:
            response = await self._client.post_json(
                "/chat/completions", request_body(self.endpoint.model, request)
            )
        except asyncio.TimeoutError:
            return self._failure(f"request timed out after {self.endpoint.timeout:g}s", True, started)
        except HttpError as exc:
            return self._failure(f"connection failed: {exc}", True, started)
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
                latency_s=response.elapsed_s,
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
    return error_detail(body) or ""
