"""Join the requests of concurrent callers into one backend call.

promptopt's backends are batch-first: a local model answers 30 requests in one batch far
faster than 30 one at a time. Code that calls a backend one request per thread (DSPy's
``Evaluate`` with ``num_threads`` > 1, through :class:`~promptopt.dspy_interop.lm.PromptOptLM`)
would never fill a batch. :class:`CoalescingBackend` sits in front of such a backend:

- a caller's requests wait for the callers arriving at the same time (until none has
  arrived for ``window_s``, at most ``max_wait_s``), then all of them go to the inner
  backend in one ``generate`` call, and each caller gets its own completions back, in
  order;
- a caller asking exactly what another caller is already waiting for (DSPy resubmits an
  example it thinks is a straggler) waits for that answer instead of asking again, so
  the duplicate is neither computed nor counted;
- one inner call runs at a time; callers that arrive meanwhile form the next group;
- if the inner backend has a call limit (``remaining_calls()``, as
  :class:`~promptopt.budget.BudgetedBackend` has), a group takes only the callers that
  fit in what is left (always at least one), so a limit is overshot no more than
  without coalescing; the callers left out find it spent on their turn;
- an exception of the inner call is raised in every caller of that group.

Completions depend only on their requests (the backend contract), so joining changes
speed, not answers. What timing can change is which callers share a group, and so, at a
call limit, which of them are answered before it is spent.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Sequence

from promptopt.backends.base import Backend
from promptopt.types import Completion, GenerationRequest


class _Ticket:
    def __init__(self, requests: Sequence[GenerationRequest]) -> None:
        self.requests = tuple(requests)  # also its key among the callers waiting
        self.done = threading.Event()
        self.result: list[Completion] | None = None
        self.error: BaseException | None = None


class CoalescingBackend(Backend):
    """``inner`` answering the requests of concurrent callers together (see the module)."""

    def __init__(self, inner: Backend, *, window_s: float = 0.05, max_wait_s: float = 1.0) -> None:
        self.inner = inner
        self.window_s = window_s
        self.max_wait_s = max_wait_s
        self._pending: list[_Ticket] = []
        self._waiting: dict[tuple[GenerationRequest, ...], _Ticket] = {}  # pending or running
        self._arrived = 0.0  # when the last caller arrived
        self._lock = threading.Lock()  # guards _pending, _waiting, _arrived
        self._turn = threading.Lock()  # one inner call at a time
        self.groups = 0  # inner calls made (for tests and reports)
        self.duplicates = 0  # callers answered by another caller's identical request

    @property
    def model_id(self) -> str:
        return self.inner.model_id

    def describe(self) -> dict[str, object]:
        return self.inner.describe()

    def remaining_calls(self) -> int | None:
        remaining = getattr(self.inner, "remaining_calls", None)
        return remaining() if callable(remaining) else None

    def generate(self, requests: Sequence[GenerationRequest]) -> list[Completion]:
        if not requests:
            return []
        key = tuple(requests)
        with self._lock:
            ticket = self._waiting.get(key)
            if ticket is not None:
                self.duplicates += 1
            else:
                ticket = _Ticket(requests)
                self._waiting[key] = ticket
                self._pending.append(ticket)
                self._arrived = time.monotonic()
        while not ticket.done.is_set():
            with self._turn:
                if ticket.done.is_set():
                    break
                self._gather()
                self._serve(self._take())
        if ticket.error is not None:
            raise ticket.error
        assert ticket.result is not None
        return ticket.result

    def _gather(self) -> None:
        """Wait while callers keep arriving (``window_s`` of quiet, ``max_wait_s`` at most)."""
        started = time.monotonic()
        while True:
            with self._lock:
                quiet = time.monotonic() - self._arrived
            left = min(self.window_s - quiet, self.max_wait_s - (time.monotonic() - started))
            if left <= 0:
                return
            time.sleep(left)

    def _take(self) -> list[_Ticket]:
        """The next group: pending callers in arrival order, within a call limit."""
        room = self.remaining_calls()
        with self._lock:
            group: list[_Ticket] = []
            size = 0
            for ticket in self._pending:
                if group and room is not None and size + len(ticket.requests) > room:
                    break
                group.append(ticket)
                size += len(ticket.requests)
            del self._pending[: len(group)]
        return group

    def _serve(self, group: list[_Ticket]) -> None:
        if not group:
            return
        joined = [request for ticket in group for request in ticket.requests]
        try:
            completions = self.inner.generate(joined)
        except BaseException as exc:  # every caller of the group sees the failure
            for ticket in group:
                ticket.error = exc
            self._finish(group)
            return
        finally:
            self.groups += 1
        at = 0
        for ticket in group:
            ticket.result = completions[at : at + len(ticket.requests)]
            at += len(ticket.requests)
        self._finish(group)

    def _finish(self, group: list[_Ticket]) -> None:
        with self._lock:  # a later identical request asks again (the cache below may answer it)
            for ticket in group:
                self._waiting.pop(ticket.requests, None)
        for ticket in group:
            ticket.done.set()

    def close(self) -> None:
        self.inner.close()
