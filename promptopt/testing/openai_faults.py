"""What the loopback OpenAI server injects and records: fault kinds, :class:`Fault`,
:class:`FaultPlan` and :class:`RecordedRequest`. See :mod:`promptopt.testing.openai_server`."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
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
