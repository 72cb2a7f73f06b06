"""A cluster-wide rate limiter per provider: requests per minute and tokens per minute,
and a pause for everyone when the provider answers ``Retry-After``.

The arithmetic (:class:`Reservations`) is plain Python with an injectable clock, so it
is tested without Ray. Workers share it through one named Ray actor per provider
(:func:`limiter_actor`), asking once per chunk of requests, not once per request.

Reservation, not polling: ``acquire(n, tokens)`` books the earliest moment at which
``n`` more requests and ``tokens`` more tokens fit under both limits and returns how long
the caller must wait before sending. Bookings are first come, first served, so a worker
cannot starve the others, and one round trip to the actor is enough.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from typing import Any

from promptopt.pool.placement import on_driver_node

#: Namespace of the named limiter actors, so that several drivers on one cluster share them.
NAMESPACE = "promptopt"


@dataclass(frozen=True)
class RateLimit:
    """Provider limits; ``None`` means unlimited. ``burst_s`` is how many seconds' worth
    of the rate may be sent at once after an idle spell (providers refill continuously)."""

    requests_per_minute: float | None = None
    tokens_per_minute: float | None = None
    burst_s: float = 1.0

    def __post_init__(self) -> None:
        for name in ("requests_per_minute", "tokens_per_minute"):
            value = getattr(self, name)
            if value is not None and not value > 0:
                raise ValueError(f"{name} must be positive or None, got {value}")
        if self.burst_s < 0:
            raise ValueError(f"burst_s must be >= 0, got {self.burst_s}")

    @property
    def unlimited(self) -> bool:
        return self.requests_per_minute is None and self.tokens_per_minute is None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


class _Lane:
    """One limited quantity, as a generic cell rate algorithm: ``tat`` is the theoretical
    arrival time of the next unit; a cost may start once ``tat - tolerance`` is reached."""

    def __init__(self, per_minute: float, burst_s: float) -> None:
        self.interval = 60.0 / per_minute  # seconds per unit
        # burst_s seconds' worth of units may go at once, and always at least one.
        self.tolerance = max(self.interval, burst_s)
        self.tat = float("-inf")

    def earliest(self, now: float) -> float:
        return max(now, self.tat - self.tolerance)

    def book(self, start: float, cost: float) -> None:
        self.tat = max(self.tat, start) + cost * self.interval


class Reservations:
    """Books requests under a :class:`RateLimit`. Not thread-safe by itself: the Ray
    actor that holds it runs one method at a time."""

    def __init__(self, limit: RateLimit, clock: Callable[[], float] = time.monotonic) -> None:
        self.limit = limit
        self._clock = clock
        self._requests = (
            _Lane(limit.requests_per_minute, limit.burst_s) if limit.requests_per_minute else None
        )
        self._tokens = _Lane(limit.tokens_per_minute, limit.burst_s) if limit.tokens_per_minute else None
        self._paused_until = float("-inf")
        self.granted_requests = 0
        self.granted_tokens = 0
        self.pauses = 0
        self.waited_s = 0.0

    def acquire(self, requests: int, tokens: int = 0) -> float:
        """Book ``requests`` requests costing ``tokens`` tokens; return the seconds to wait."""
        now = self._clock()
        start = max(now, self._paused_until)
        if self._requests is not None:
            start = max(start, self._requests.earliest(now))
        if self._tokens is not None and tokens > 0:
            start = max(start, self._tokens.earliest(now))
        if self._requests is not None:
            self._requests.book(start, requests)
        if self._tokens is not None and tokens > 0:
            self._tokens.book(start, tokens)
        self.granted_requests += requests
        self.granted_tokens += tokens
        wait = start - now
        self.waited_s += wait
        return wait

    def pause(self, seconds: float) -> None:
        """The provider said ``Retry-After: seconds``: nothing is granted before then."""
        if seconds > 0:
            self._paused_until = max(self._paused_until, self._clock() + seconds)
            self.pauses += 1

    def settle(self, tokens: int) -> None:
        """Correct a booking by the difference between actual and estimated tokens."""
        if self._tokens is not None and tokens:
            self._tokens.tat += tokens * self._tokens.interval

    def stats(self) -> dict[str, Any]:
        return {
            "granted_requests": self.granted_requests,
            "granted_tokens": self.granted_tokens,
            "pauses": self.pauses,
            "waited_s": round(self.waited_s, 3),
            "paused_for_s": round(max(0.0, self._paused_until - self._clock()), 3),
        }


def estimate_tokens(prompt_chars: int, max_tokens: int) -> int:
    """What a provider counts against tokens/min before answering: the prompt (about four
    characters a token) plus the completion it may produce."""
    return prompt_chars // 4 + 1 + max_tokens


class LimiterActor:
    """The Ray actor around :class:`Reservations` (made remote in :func:`limiter_actor`)."""

    def __init__(self, limit: RateLimit) -> None:
        self._book = Reservations(limit)

    def acquire(self, requests: int, tokens: int = 0) -> float:
        return self._book.acquire(requests, tokens)

    def pause(self, seconds: float) -> None:
        self._book.pause(seconds)

    def settle(self, tokens: int) -> None:
        self._book.settle(tokens)

    def stats(self) -> dict[str, Any]:
        return self._book.stats()


def limiter_name(provider: str) -> str:
    return f"promptopt-ratelimit:{provider}"


def limiter_actor(provider: str, limit: RateLimit) -> Any:
    """The cluster's limiter for ``provider``: created on first use, then shared by every
    worker and every driver in the ``promptopt`` namespace (the first creator's limits win)."""
    import ray

    remote = ray.remote(num_cpus=0, max_restarts=-1)(LimiterActor)
    return remote.options(
        name=limiter_name(provider),
        namespace=NAMESPACE,
        get_if_exists=True,
        lifetime=None,
        **on_driver_node(),
    ).remote(limit)
