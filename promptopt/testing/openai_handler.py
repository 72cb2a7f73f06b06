"""The loopback OpenAI server's HTTP side: the threading server and the request handler
that answers chat completions (JSON or server-sent events), lists models and injects
faults. See :mod:`promptopt.testing.openai_server`."""

from __future__ import annotations

import contextlib
import json
import re
import socket
import struct
import threading
import time
from collections.abc import Callable, Mapping
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import TYPE_CHECKING, Any

from promptopt.testing.openai_faults import Fault

if TYPE_CHECKING:
    from promptopt.testing.openai_server import FakeOpenAIServer


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
