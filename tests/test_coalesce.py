"""CoalescingBackend: concurrent callers share backend calls, get their own answers in
order, and a call limit is not overshot by the joining."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Sequence
from typing import Any

import pytest

from promptopt.backends.coalesce import CoalescingBackend
from promptopt.backends.fake import FakeBackend
from promptopt.budget import Budget, BudgetedBackend
from promptopt.errors import BudgetExceeded
from promptopt.types import Completion, GenerationRequest, Message


def request(text: str) -> GenerationRequest:
    return GenerationRequest(messages=(Message("user", text),))


class Recording(FakeBackend):
    def __init__(self, fail: bool = False) -> None:
        super().__init__(latency_s=0.01)
        self.calls: list[int] = []
        self.fail = fail

    def generate(self, requests: Sequence[GenerationRequest]) -> list[Completion]:
        self.calls.append(len(requests))
        if self.fail:
            raise RuntimeError("the server fell over")
        return super().generate(requests)


def in_threads(n: int, work: Callable[[int], Any]) -> list[Any]:
    """Run ``work(i)`` in ``n`` threads started together; each result or exception."""
    start = threading.Barrier(n)
    out: list[Any] = [None] * n

    def run(i: int) -> None:
        start.wait()
        try:
            out[i] = work(i)
        except Exception as exc:  # collected for the assertions
            out[i] = exc

    threads = [threading.Thread(target=run, args=(i,)) for i in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=30)
    return out


def test_concurrent_callers_share_calls_and_get_their_own_answers_in_order() -> None:
    inner = Recording()
    backend = CoalescingBackend(inner, window_s=0.05)
    questions = [[f"q{i}-{j}" for j in range(1 + i % 3)] for i in range(8)]
    answers = in_threads(8, lambda i: [c.text for c in backend.generate([request(q) for q in questions[i]])])
    direct = FakeBackend()
    for i, got in enumerate(answers):
        assert got == [c.text for c in direct.generate([request(q) for q in questions[i]])]
    assert sum(inner.calls) == sum(len(q) for q in questions)
    assert len(inner.calls) < 8 and backend.groups == len(inner.calls)  # joined
    assert backend.generate([]) == []


def test_a_call_limit_is_not_overshot_by_joining() -> None:
    budgeted = BudgetedBackend(Recording(), Budget(max_calls=3))
    backend = CoalescingBackend(budgeted, window_s=0.05)
    results = in_threads(8, lambda i: backend.generate([request(f"q{i}")]))
    answered = [r for r in results if isinstance(r, list)]
    refused = [r for r in results if isinstance(r, BudgetExceeded)]
    assert len(answered) == 3 and len(refused) == 5 and budgeted.spend.calls == 3
    assert backend.remaining_calls() == 0


def test_a_failure_of_the_backend_reaches_every_caller_of_the_group() -> None:
    backend = CoalescingBackend(Recording(fail=True), window_s=0.05)
    results = in_threads(4, lambda i: backend.generate([request(f"q{i}")]))
    assert all(isinstance(r, RuntimeError) and "fell over" in str(r) for r in results)
    with pytest.raises(RuntimeError):
        backend.generate([request("alone")])


class AnswersOnce(Recording):
    """Answers only once ``ready()`` holds (10 s at most), so that no caller, however late a
    loaded machine starts its thread, comes after the call it should join has ended."""

    def __init__(self, ready: Callable[[], bool]) -> None:
        super().__init__()
        self.ready = ready

    def generate(self, requests: Sequence[GenerationRequest]) -> list[Completion]:
        deadline = time.monotonic() + 10
        while not self.ready() and time.monotonic() < deadline:
            time.sleep(0.005)
        return super().generate(requests)


def test_an_identical_request_waiting_already_is_asked_once() -> None:
    inner = AnswersOnce(lambda: backend.duplicates >= 4)
    backend = CoalescingBackend(inner, window_s=0.05)
    results = in_threads(6, lambda i: [c.text for c in backend.generate([request(f"q{i % 2}")])])
    assert results[0] == results[2] == results[4] and results[1] == results[3] == results[5]
    assert sum(inner.calls) == 2 and backend.duplicates == 4
    again = backend.generate([request("q0")])  # no longer waiting: asked again
    assert [c.text for c in again] == results[0] and sum(inner.calls) == 3
