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
import random
import signal
import socket
import threading
import time
from collections import Counter
from collections.abc import Sequence
from http.server import BaseHTTPRequestHandler
from typing import Any

from promptopt.testing.openai_faults import FAULT_KINDS, Fault, FaultPlan, RecordedRequest, Responder
from promptopt.testing.openai_handler import TopLogprobs, _HTTPServer, echo_last_user_message

__all__ = [
    "FAULT_KINDS",
    "FakeOpenAIServer",
    "Fault",
    "FaultPlan",
    "RecordedRequest",
    "Responder",
    "echo_last_user_message",
    "main",
]


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
