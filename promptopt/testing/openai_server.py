"""A real OpenAI-compatible HTTP server on loopback, for tests and benchmarks.

Standard library only. It speaks enough of the chat-completions protocol for the
official ``openai`` client (and any other OpenAI-compatible client) to talk to it:

- ``POST /v1/chat/completions``: JSON replies, or server-sent events when the request
  says ``"stream": true``; ``stop`` and ``max_tokens`` are honoured (whitespace words
  stand in for tokens), ``n`` gives that many identical choices;
- ``GET /v1/models`` and ``GET /v1/models/<id>``.

What the reply says is decided by ``responder(request_json) -> str`` (default: echo the
last user message). Every chat-completions request can wait ``latency_s`` first (the
throughput benchmarks use this), and :class:`FaultPlan` injects failures, either by a
script consumed in arrival order or at seeded rates::

    plan = FaultPlan(rates={"rate_limit": 0.1, "server_error": 0.1}, seed=7)
    with FakeOpenAIServer(latency_s=0.1, faults=plan) as server:
        client = openai.OpenAI(base_url=server.base_url, api_key="x")
        ...
        assert server.fault_counts["rate_limit"] > 0

Rate-based faults are decided from ``(seed, request body, how many times this body was
seen)`` rather than from arrival order, so a run with concurrent requests meets the same
faults every time, and a retried request draws afresh.

Run it by hand with ``python -m promptopt.testing.openai_server --port 8000 --latency 0.1``.
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import json
import random
import re
import signal
import socket
import struct
import threading
import time
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

Responder = Callable[[dict[str, Any]], str]

#: Every kind of fault the server can inject, and what the client sees.
FAULT_KINDS: dict[str, str] = {
    "rate_limit": "HTTP 429 with a Retry-After header",
    "server_error": "HTTP 500",
    "bad_gateway": "HTTP 502",
    "unavailable": "HTTP 503",
    "gateway_timeout": "HTTP 504",
    "bad_request": "HTTP 400",
    "status": "any HTTP status given by Fault.status",
    "delay": "waits Fault.delay_s (or FaultPlan.delay_s) before a normal reply, to trip client timeouts",
    "reset": "connection reset (TCP RST) without a reply",
    "disconnect": "connection closed without a reply",
    "malformed_json": "HTTP 200 whose JSON body is cut off",
    "empty_choices": "HTTP 200 with an empty choices list",
    "truncated_stream": "a body (or event stream) that stops half-way and closes the connection",
}

_STATUS_OF_KIND = {
    "rate_limit": 429,
    "server_error": 500,
    "bad_gateway": 502,
    "unavailable": 503,
    "gateway_timeout": 504,
    "bad_request": 400,
}


@dataclass(frozen=True)
class Fault:
    """One injected failure. ``kind`` is a key of :data:`FAULT_KINDS`."""

    kind: str
    status: int | None = None
    retry_after: str | None = None
    delay_s: float | None = None

    def __post_init__(self) -> None:
        if self.kind not in FAULT_KINDS:
            raise ValueError(f"unknown fault kind {self.kind!r}; expected one of {', '.join(FAULT_KINDS)}")
        if self.kind == "status" and self.status is None:
            raise ValueError("a 'status' fault needs Fault.status")

    @classmethod
    def parse(cls, spec: Fault | str) -> Fault:
        """``"rate_limit"`` → that kind; ``"503"`` → ``Fault("unavailable")``; ``"418"`` → ``Fault("status", status=418)``."""
        if isinstance(spec, Fault):
            return spec
        if spec.isdigit():
            status = int(spec)
            named = [kind for kind, code in _STATUS_OF_KIND.items() if code == status]
            return cls(named[0]) if named else cls("status", status=status)
        return cls(spec)

    @property
    def http_status(self) -> int | None:
        return self.status if self.kind == "status" else _STATUS_OF_KIND.get(self.kind)


_ScriptEntry = Fault | str | None


@dataclass(frozen=True)
class FaultPlan:
    """Which chat-completions requests fail, and how.

    ``script`` is consumed one entry per chat-completions request in arrival order
    (``None`` or ``"ok"`` means a normal reply); once it is used up, ``rates`` (kind →
    probability, summing to at most 1) decide, seeded by ``seed``. ``retry_after`` is
    the Retry-After header value sent with 429s (seconds or an HTTP date), ``delay_s``
    how long a ``delay`` fault waits.
    """

    rates: Mapping[str, float] = field(default_factory=dict)
    script: Sequence[_ScriptEntry] = ()
    seed: int = 0
    retry_after: str = "1"
    delay_s: float = 30.0

    def __post_init__(self) -> None:
        for kind, rate in self.rates.items():
            Fault.parse(kind)
            if not 0.0 <= rate <= 1.0:
                raise ValueError(f"fault rate for {kind!r} must be within [0, 1], got {rate}")
        if sum(self.rates.values()) > 1.0 + 1e-9:
            raise ValueError(f"fault rates sum to {sum(self.rates.values()):.3f} > 1")
        object.__setattr__(self, "script", tuple(self.script))
        for entry in self.script:
            if entry is not None and entry != "ok":
                Fault.parse(entry)


@dataclass(frozen=True)
class RecordedRequest:
    """One request as the server received it. ``body`` is the parsed JSON (or ``None``)."""

    method: str
    path: str
    headers: Mapping[str, str]
    body: Any
    fault: str | None
    received_at: float


def echo_last_user_message(request: dict[str, Any]) -> str:
    """The default responder: the text of the last user message."""
    for message in reversed(request.get("messages") or []):
        if isinstance(message, dict) and message.get("role") == "user":
            return _content_text(message.get("content"))
    return ""


def _content_text(content: Any) -> str:
    if isinstance(content, str):
        return content
    if isinstance(content, list):  # [{"type": "text", "text": ...}, ...]
        return "".join(p.get("text", "") for p in content if isinstance(p, dict))
    return ""


def _count_words(text: str) -> int:
    return len(text.split())


class _HTTPServer(ThreadingHTTPServer):
    daemon_threads = True
    # The listen backlog: the default of 5 drops connections when 64 clients connect at once.
    request_queue_size = 512
    allow_reuse_address = True

    def __init__(self, address: tuple[str, int], owner: FakeOpenAIServer) -> None:
        self.owner = owner
        self.open_connections: set[socket.socket] = set()
        self.connections_lock = threading.Lock()
        super().__init__(address, _Handler)

    def process_request(self, request: Any, client_address: Any) -> None:
        with self.connections_lock:
            self.open_connections.add(request)
        super().process_request(request, client_address)

    def shutdown_request(self, request: Any) -> None:
        with self.connections_lock:
            self.open_connections.discard(request)
        super().shutdown_request(request)


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive, as real servers do; clients reuse connections
    server_version = "promptopt-fake-openai/1.0"
    timeout = 60  # an idle keep-alive connection is closed after this many seconds
    server: _HTTPServer

    def setup(self) -> None:
        super().setup()
        # Headers and body go out in separate writes; with Nagle's algorithm on, the
        # body waits for the client's delayed ACK (~40 ms) and every reply gets slower.
        with contextlib.suppress(OSError):
            self.connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - stdlib signature
        pass  # quiet: tests and benchmarks read the records, not a log

    # -- routing -------------------------------------------------------------------

    def do_GET(self) -> None:
        owner = self.server.owner
        path = self.path.split("?", 1)[0].rstrip("/")
        owner._record(self, body=None, fault=None)
        if path in ("/v1/models", "/models"):
            data = [_model_entry(m) for m in owner.models]
            self._send_json(200, {"object": "list", "data": data})
        elif path.startswith(("/v1/models/", "/models/")):
            model = path.rsplit("/", 1)[1]
            if model in owner.models:
                self._send_json(200, _model_entry(model))
            else:
                self._send_error(404, f"The model '{model}' does not exist", "invalid_request_error")
        elif path in ("/health", "/v1/health"):
            self._send_json(200, {"status": "ok"})
        else:
            self._send_error(404, f"no route for GET {path}", "invalid_request_error")

    def do_POST(self) -> None:
        owner = self.server.owner
        path = self.path.split("?", 1)[0].rstrip("/")
        raw = self._read_body()
        if raw is None:
            return
        try:
            body = json.loads(raw) if raw else None
        except ValueError:
            body = None
        if path not in ("/v1/chat/completions", "/chat/completions"):
            owner._record(self, body=body, fault=None)
            self._send_error(404, f"no route for POST {path}", "invalid_request_error")
            return
        fault = owner._decide_fault(raw)
        owner._record(self, body=body, fault=fault.kind if fault else None)
        with owner._in_flight_tracker():
            if owner.api_key is not None and self.headers.get("Authorization") != f"Bearer {owner.api_key}":
                self._send_error(
                    401, "Incorrect API key provided.", "invalid_request_error", code="invalid_api_key"
                )
                return
            if not isinstance(body, dict) or not isinstance(body.get("messages"), list):
                self._send_error(
                    400, "request body must be a JSON object with a 'messages' list", "invalid_request_error"
                )
                return
            if owner.latency_s > 0 and owner._stopping.wait(owner.latency_s):
                return
            if fault is None:
                self._reply(body)
            else:
                self._inject(fault, body)

    # -- replies -------------------------------------------------------------------

    def _reply(self, request: dict[str, Any], *, truncate: bool = False) -> None:
        owner = self.server.owner
        try:
            text = owner.responder(request)
        except Exception as exc:  # the responder is test code: report its failure as a 500
            self._send_error(500, f"responder failed: {type(exc).__name__}: {exc}", "server_error")
            return
        text, finish_reason = _apply_limits(text, request)
        prompt_tokens = sum(
            _count_words(_content_text(m.get("content"))) for m in request["messages"] if isinstance(m, dict)
        )
        usage = {
            "prompt_tokens": prompt_tokens,
            "completion_tokens": _count_words(text),
            "total_tokens": prompt_tokens + _count_words(text),
        }
        completion_id = f"chatcmpl-{owner._next_id()}"
        model = str(request.get("model", owner.models[0] if owner.models else "fake-model"))
        n = request.get("n") or 1
        n = n if isinstance(n, int) and 1 <= n <= 128 else 1
        if request.get("stream"):
            include_usage = bool((request.get("stream_options") or {}).get("include_usage"))
            self._stream(
                completion_id, model, text, finish_reason, usage if include_usage else None, n, truncate
            )
            return
        payload: dict[str, Any] = {
            "id": completion_id,
            "object": "chat.completion",
            "created": int(time.time()),
            "model": model,
            "system_fingerprint": "fp_promptopt_fake",
            "choices": [
                {
                    "index": i,
                    "message": {"role": "assistant", "content": text},
                    "logprobs": _logprobs(owner, request),
                    "finish_reason": finish_reason,
                }
                for i in range(n)
            ],
        }
        if owner.usage:
            payload["usage"] = usage
        if truncate:
            data = json.dumps(payload).encode("utf-8")
            self._send_raw(200, data[: len(data) // 2], content_length=len(data))
            self._close_now()
        else:
            self._send_json(200, payload)

    def _stream(
        self,
        completion_id: str,
        model: str,
        text: str,
        finish_reason: str,
        usage: dict[str, int] | None,
        n: int,
        truncate: bool,
    ) -> None:
        self.send_response(200)
        self.send_header("Content-Type", "text/event-stream")
        self.send_header("Cache-Control", "no-cache")
        self.send_header("Connection", "close")  # no length and no chunking: the close ends the body
        self.end_headers()
        self.close_connection = True
        created = int(time.time())

        def chunk(choices: list[dict[str, Any]], extra: dict[str, Any] | None = None) -> bytes:
            obj = {
                "id": completion_id,
                "object": "chat.completion.chunk",
                "created": created,
                "model": model,
                "choices": choices,
            }
            obj.update(extra or {})
            return f"data: {json.dumps(obj)}\n\n".encode()

        pieces = re.findall(r"\s*\S+\s*", text) or [text]
        events = []
        for i in range(n):
            events.append(
                chunk([{"index": i, "delta": {"role": "assistant", "content": ""}, "finish_reason": None}])
            )
            events += [chunk([{"index": i, "delta": {"content": p}, "finish_reason": None}]) for p in pieces]
            events.append(chunk([{"index": i, "delta": {}, "finish_reason": finish_reason}]))
        if usage is not None:
            events.append(chunk([], {"usage": usage}))
        events.append(b"data: [DONE]\n\n")
        if truncate:
            events = events[: max(1, len(events) // 2)]
        try:
            for event in events:
                self.wfile.write(event)
        except OSError:
            return
        if truncate:
            self._close_now()

    def _inject(self, fault: Fault, request: dict[str, Any]) -> None:
        owner = self.server.owner
        plan = owner.faults
        status = fault.http_status
        if status is not None:
            headers = {}
            if status in (429, 503):
                headers["Retry-After"] = fault.retry_after or plan.retry_after
            kind = {429: "rate_limit_error", 400: "invalid_request_error"}.get(status, "server_error")
            self._send_error(status, f"injected fault: {fault.kind} (HTTP {status})", kind, headers=headers)
        elif fault.kind == "delay":
            delay = fault.delay_s if fault.delay_s is not None else plan.delay_s
            if not owner._stopping.wait(delay):
                self._reply(request)
        elif fault.kind == "reset":
            self._close_now(reset=True)
        elif fault.kind == "disconnect":
            self._close_now()
        elif fault.kind == "malformed_json":
            self._send_raw(
                200, b'{"id": "chatcmpl-broken", "object": "chat.completion", "choices": [{"index": 0, "mess'
            )
        elif fault.kind == "empty_choices":
            payload = {
                "id": f"chatcmpl-{owner._next_id()}",
                "object": "chat.completion",
                "created": int(time.time()),
                "model": str(request.get("model", "")),
                "choices": [],
            }
            if owner.usage:
                payload["usage"] = {"prompt_tokens": 0, "completion_tokens": 0, "total_tokens": 0}
            self._send_json(200, payload)
        elif fault.kind == "truncated_stream":
            self._reply(request, truncate=True)
        else:  # pragma: no cover - Fault validates kinds
            raise AssertionError(fault.kind)

    # -- plumbing ------------------------------------------------------------------

    def _read_body(self) -> bytes | None:
        length = self.headers.get("Content-Length")
        if length is None:
            if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
                return self._read_chunked()
            return b""
        try:
            return self.rfile.read(int(length))
        except (ValueError, OSError):
            self.close_connection = True
            return None

    def _read_chunked(self) -> bytes | None:
        data = bytearray()
        try:
            while True:
                size = int(self.rfile.readline().split(b";", 1)[0].strip() or b"0", 16)
                if size == 0:
                    while self.rfile.readline() not in (b"\r\n", b"\n", b""):
                        pass
                    return bytes(data)
                data += self.rfile.read(size)
                self.rfile.readline()
        except (ValueError, OSError):
            self.close_connection = True
            return None

    def _send_json(self, status: int, payload: Any, headers: Mapping[str, str] | None = None) -> None:
        self._send_raw(status, json.dumps(payload).encode("utf-8"), headers=headers)

    def _send_error(
        self,
        status: int,
        message: str,
        error_type: str,
        *,
        code: str | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> None:
        payload = {"error": {"message": message, "type": error_type, "param": None, "code": code}}
        self._send_json(status, payload, headers=headers)

    def _send_raw(
        self,
        status: int,
        data: bytes,
        *,
        headers: Mapping[str, str] | None = None,
        content_length: int | None = None,
    ) -> None:
        try:
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data) if content_length is None else content_length))
            for name, value in (headers or {}).items():
                self.send_header(name, value)
            self.end_headers()
            self.wfile.write(data)
        except OSError:  # the client went away (e.g. it timed out during a delay)
            self.close_connection = True

    def _close_now(self, *, reset: bool = False) -> None:
        """Close the connection at once: FIN after what was sent, or RST when ``reset``."""
        self.close_connection = True
        try:
            if reset:
                # SO_LINGER with a zero timeout makes close() send RST instead of FIN.
                self.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            else:
                self.connection.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass
        with contextlib.suppress(OSError):
            self.connection.close()


def _model_entry(model: str) -> dict[str, Any]:
    return {"id": model, "object": "model", "created": 0, "owned_by": "promptopt"}


def _apply_limits(text: str, request: dict[str, Any]) -> tuple[str, str]:
    """Cut ``text`` at the first stop sequence and to ``max_tokens`` words, as a model would."""
    finish_reason = "stop"
    stop = request.get("stop")
    stops = [stop] if isinstance(stop, str) else [s for s in (stop or []) if isinstance(s, str) and s]
    cuts = [i for i in (text.find(s) for s in stops) if i >= 0]
    if cuts:
        text = text[: min(cuts)]
    limit = request.get("max_completion_tokens") or request.get("max_tokens")
    if isinstance(limit, int) and limit >= 0:
        words = re.findall(r"\s*\S+", text)
        if len(words) > limit:
            text = "".join(words[:limit]).lstrip()
            finish_reason = "length"
    return text, finish_reason


TopLogprobs = Callable[[dict[str, Any]], "list[tuple[str, float]]"]


def _logprobs(owner: FakeOpenAIServer, request: dict[str, Any]) -> dict[str, Any] | None:
    """The ``logprobs`` of a choice: the scripted alternatives of the first token."""
    if not request.get("logprobs") or owner.top_logprobs is None:
        return None
    top = [{"token": t, "logprob": lp, "bytes": None} for t, lp in owner.top_logprobs(request)]
    first = top[0] if top else {"token": "", "logprob": 0.0, "bytes": None}
    return {"content": [{**first, "top_logprobs": top}]}


class FakeOpenAIServer:
    """An OpenAI-compatible chat-completions server on ``host:port`` (port 0: any free port).

    Use as a context manager (or ``start()`` / ``stop()``); ``base_url`` is what an
    OpenAI client wants (``http://127.0.0.1:PORT/v1``). ``responder`` is called from
    many threads at once and must be thread-safe. ``api_key``, when given, is required
    as ``Authorization: Bearer <key>`` (else 401). ``usage=False`` leaves ``usage`` out
    of replies. Records of received requests are kept unless ``record=False`` (for
    long benchmarks).
    """

    def __init__(
        self,
        responder: Responder | None = None,
        *,
        latency_s: float = 0.0,
        faults: FaultPlan | None = None,
        host: str = "127.0.0.1",
        port: int = 0,
        models: Sequence[str] = ("fake-model",),
        api_key: str | None = None,
        usage: bool = True,
        record: bool = True,
        top_logprobs: TopLogprobs | None = None,
    ) -> None:
        if latency_s < 0:
            raise ValueError(f"latency_s must be >= 0, got {latency_s}")
        self.responder: Responder = responder or echo_last_user_message
        self.latency_s = latency_s
        self.faults = faults or FaultPlan()
        self.host = host
        self.models = tuple(models)
        self.api_key = api_key
        self.usage = usage
        self.record = record
        # A request with "logprobs": true gets top_logprobs(request_json) -> [(token, logprob), ...]
        # as its first token's alternatives; without it, "logprobs" stays null (as servers that
        # do not return them).
        self.top_logprobs = top_logprobs
        self._requested_port = port
        self._lock = threading.Lock()
        self._stopping = threading.Event()
        self._records: list[RecordedRequest] = []
        self._fault_counts: Counter[str] = Counter()
        self._body_seen: Counter[str] = Counter()
        self._script_position = 0
        self._id_counter = 0
        self._in_flight = 0
        self._max_in_flight = 0
        self._chat_requests = 0
        self._httpd: _HTTPServer | None = None
        self._thread: threading.Thread | None = None

    # -- lifecycle -----------------------------------------------------------------

    def start(self) -> FakeOpenAIServer:
        if self._httpd is not None:
            return self
        self._stopping.clear()
        self._httpd = _HTTPServer((self.host, self._requested_port), self)
        self._thread = threading.Thread(
            target=self._httpd.serve_forever,
            kwargs={"poll_interval": 0.02},
            name="fake-openai-server",
            daemon=True,
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop serving, abort pending delays and close open connections. Idempotent."""
        httpd, self._httpd = self._httpd, None
        if httpd is None:
            return
        self._stopping.set()
        httpd.shutdown()
        with httpd.connections_lock:
            connections = list(httpd.open_connections)
        for conn in connections:  # unblock handler threads waiting on keep-alive reads
            with contextlib.suppress(OSError):
                conn.shutdown(socket.SHUT_RDWR)
        httpd.server_close()
        if self._thread is not None:
            self._thread.join(timeout=5)

    def __enter__(self) -> FakeOpenAIServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # -- addresses -----------------------------------------------------------------

    @property
    def port(self) -> int:
        if self._httpd is None:
            raise RuntimeError("the server is not running; use it as a context manager or call start()")
        return int(self._httpd.server_address[1])

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    @property
    def base_url(self) -> str:
        return f"{self.url}/v1"

    # -- observations (thread-safe snapshots) ----------------------------------------

    @property
    def requests(self) -> list[RecordedRequest]:
        with self._lock:
            return list(self._records)

    @property
    def chat_requests(self) -> list[RecordedRequest]:
        return [
            r
            for r in self.requests
            if r.method == "POST" and r.path.rstrip("/").endswith("/chat/completions")
        ]

    @property
    def chat_request_count(self) -> int:
        """Chat-completions requests received (counted even when ``record=False``)."""
        with self._lock:
            return self._chat_requests

    @property
    def fault_counts(self) -> dict[str, int]:
        with self._lock:
            return dict(self._fault_counts)

    @property
    def max_in_flight(self) -> int:
        """The most chat-completions requests that were being handled at the same time."""
        with self._lock:
            return self._max_in_flight

    def clear(self) -> None:
        """Forget records, counts and the script position (not the configuration)."""
        with self._lock:
            self._records.clear()
            self._fault_counts.clear()
            self._body_seen.clear()
            self._script_position = 0
            self._max_in_flight = self._in_flight
            self._chat_requests = 0

    # -- used by the handler ---------------------------------------------------------

    def _record(self, handler: BaseHTTPRequestHandler, *, body: Any, fault: str | None) -> None:
        if not self.record:
            return
        entry = RecordedRequest(
            method=handler.command,
            path=handler.path,
            headers={k.lower(): v for k, v in handler.headers.items()},
            body=body,
            fault=fault,
            received_at=time.monotonic(),
        )
        with self._lock:
            self._records.append(entry)

    def _decide_fault(self, raw_body: bytes) -> Fault | None:
        plan = self.faults
        with self._lock:
            self._chat_requests += 1
            fault: Fault | None = None
            if self._script_position < len(plan.script):
                entry = plan.script[self._script_position]
                self._script_position += 1
                fault = None if entry is None or entry == "ok" else Fault.parse(entry)
            elif plan.rates:
                digest = hashlib.sha256(raw_body).hexdigest()
                occurrence = self._body_seen[digest]
                self._body_seen[digest] += 1
                draw = random.Random(f"{plan.seed}:{digest}:{occurrence}").random()
                cumulative = 0.0
                for kind in sorted(plan.rates):
                    cumulative += plan.rates[kind]
                    if draw < cumulative:
                        fault = Fault.parse(kind)
                        break
            if fault is not None:
                self._fault_counts[fault.kind] += 1
            return fault

    def _next_id(self) -> int:
        with self._lock:
            self._id_counter += 1
            return self._id_counter

    def _in_flight_tracker(self) -> _InFlight:
        return _InFlight(self)


class _InFlight:
    def __init__(self, server: FakeOpenAIServer) -> None:
        self.server = server

    def __enter__(self) -> None:
        with self.server._lock:
            self.server._in_flight += 1
            self.server._max_in_flight = max(self.server._max_in_flight, self.server._in_flight)

    def __exit__(self, *exc: object) -> None:
        with self.server._lock:
            self.server._in_flight -= 1


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m promptopt.testing.openai_server",
        description="Serve a fake OpenAI-compatible chat-completions API (echoes the last user message).",
    )
    parser.add_argument("--host", default="127.0.0.1", help="address to bind (default: 127.0.0.1)")
    parser.add_argument(
        "--port", type=int, default=8000, help="port to bind; 0 picks a free one (default: 8000)"
    )
    parser.add_argument(
        "--latency", type=float, default=0.0, help="seconds to wait before each reply (default: 0)"
    )
    parser.add_argument(
        "--fault",
        action="append",
        default=[],
        metavar="KIND=RATE",
        help=f"inject a fault at a rate, repeatable; kinds: {', '.join(k for k in FAULT_KINDS if k != 'status')}",
    )
    parser.add_argument("--seed", type=int, default=0, help="seed of the fault draws (default: 0)")
    parser.add_argument("--retry-after", default="1", help="Retry-After value sent with 429/503 (default: 1)")
    parser.add_argument(
        "--model", action="append", default=None, help="model id listed by /v1/models, repeatable"
    )
    args = parser.parse_args(argv)
    rates: dict[str, float] = {}
    for spec in args.fault:
        kind, sep, rate = spec.partition("=")
        if not sep:
            parser.error(f"--fault expects KIND=RATE, got {spec!r}")
        try:
            rates[kind] = float(rate)
        except ValueError:
            parser.error(f"--fault rate must be a number, got {rate!r}")
    try:
        plan = FaultPlan(rates=rates, seed=args.seed, retry_after=args.retry_after)
    except ValueError as exc:
        parser.error(str(exc))
    server = FakeOpenAIServer(
        latency_s=args.latency,
        faults=plan,
        host=args.host,
        port=args.port,
        models=args.model or ("fake-model",),
        record=False,
    )
    stop = threading.Event()
    # SIGTERM (what subprocess.terminate() sends) stops as cleanly as Ctrl-C does.
    signal.signal(signal.SIGTERM, lambda signum, frame: stop.set())
    with server:
        print(f"serving an OpenAI-compatible API at {server.base_url} (Ctrl-C to stop)", flush=True)
        try:
            while not stop.wait(0.5):
                pass
        except KeyboardInterrupt:
            pass
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
