"""The openai backend against a real OpenAI-compatible HTTP server on loopback.

Nothing is mocked: the official ``openai`` client talks HTTP to
:class:`promptopt.testing.openai_server.FakeOpenAIServer`.
"""

from __future__ import annotations

import email.utils
import logging
import threading
import time
from collections.abc import Iterator
from datetime import datetime, timedelta, timezone
from typing import Any

import openai
import pytest

from promptopt.backends.openai_backend import OpenAIBackend, parse_retry_after
from promptopt.errors import BackendError, ConfigError
from promptopt.testing.openai_server import FakeOpenAIServer, Fault, FaultPlan
from promptopt.types import GenerationRequest, Message

SECRET = "sk-test-PLANTED-secret-0123456789abcdef"


def ask(text: str, **kwargs: Any) -> GenerationRequest:
    return GenerationRequest(messages=(Message("user", text),), **kwargs)


@pytest.fixture(autouse=True)
def _clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("OPENAI_BASE_URL", raising=False)
    monkeypatch.setenv("OPENAI_API_KEY", SECRET)


@pytest.fixture
def server() -> Iterator[FakeOpenAIServer]:
    with FakeOpenAIServer() as srv:
        yield srv


def backend_for(server: FakeOpenAIServer, **kwargs: Any) -> OpenAIBackend:
    return OpenAIBackend("fake-model", base_url=server.base_url, **kwargs)


def only(backend: OpenAIBackend, request: GenerationRequest) -> Any:
    with backend:
        (completion,) = backend.generate([request])
    return completion


# -- round trip -------------------------------------------------------------------------


def test_text_usage_and_finish_reason_round_trip() -> None:
    with FakeOpenAIServer(responder=lambda req: "The answer is 42") as srv:
        completion = only(backend_for(srv), ask("What is six times seven ?"))
    assert completion.ok
    assert completion.text == "The answer is 42"
    assert (completion.tokens_in, completion.tokens_out) == (6, 4)  # the server counts words
    assert completion.finish_reason == "stop"
    assert completion.latency_s > 0
    assert not completion.retryable and completion.retry_after is None


def test_length_finish_reason_and_missing_usage() -> None:
    with FakeOpenAIServer(responder=lambda req: "one two three four five", usage=False) as srv:
        completion = only(backend_for(srv), ask("count", max_tokens=2))
    assert (completion.text, completion.finish_reason) == ("one two", "length")
    assert (completion.tokens_in, completion.tokens_out) == (0, 0)


def test_messages_and_sampling_parameters_arrive_as_sent(server: FakeOpenAIServer) -> None:
    request = GenerationRequest(
        messages=(
            Message("system", "Be brief."),
            Message("user", "Q: 2+2?"),
            Message("assistant", "4"),
            Message("user", "Q: 3+3?"),
        ),
        temperature=0.7,
        max_tokens=33,
        stop=("\n\n", "Q:"),
        sample_index=3,
    )
    with backend_for(server) as backend:
        backend.generate([request, ask("greedy", temperature=0.0, sample_index=5)])
    bodies = sorted((r.body for r in server.chat_requests), key=lambda b: b["messages"][-1]["content"])
    sampled, greedy = bodies[0], bodies[1]
    assert sampled["model"] == "fake-model"
    assert sampled["messages"] == [m.to_dict() for m in request.messages]
    assert sampled["temperature"] == 0.7
    assert sampled["max_tokens"] == 33
    assert sampled["stop"] == ["\n\n", "Q:"]
    assert sampled["seed"] == 3
    assert "stream" not in sampled or sampled["stream"] is False
    # greedy requests carry no seed (nothing to vary) and no empty stop list
    assert greedy["messages"][-1]["content"] == "greedy"
    assert greedy["temperature"] == 0.0
    assert "seed" not in greedy and "stop" not in greedy


def test_self_consistency_samples_get_distinct_seeds(server: FakeOpenAIServer) -> None:
    with backend_for(server) as backend:
        backend.generate([ask("same", temperature=0.8, sample_index=i) for i in range(4)])
    assert sorted(r.body["seed"] for r in server.chat_requests) == [0, 1, 2, 3]


def test_more_than_four_stop_sequences_are_truncated_client_side(
    server: FakeOpenAIServer, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.WARNING, logger="promptopt.backends.openai_backend"):
        completion = only(backend_for(server), ask("a b c", stop=("1", "2", "3", "4", "5", "6")))
    assert completion.ok
    assert server.chat_requests[0].body["stop"] == ["1", "2", "3", "4"]
    assert "at most 4 stop sequences" in caplog.text


def test_stop_sequence_is_honoured_end_to_end(server: FakeOpenAIServer) -> None:
    completion = only(backend_for(server), ask("reasoning here\n\nQ: next question", stop=("\n\n",)))
    assert completion.text == "reasoning here"


def test_empty_batch_makes_no_request(server: FakeOpenAIServer) -> None:
    with backend_for(server) as backend:
        assert backend.generate([]) == []
    assert server.chat_request_count == 0


# -- keys, ids and secrets -----------------------------------------------------------------


def test_key_is_sent_from_the_named_env_var_and_never_shown(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PROMPTOPT_TEST_KEY", SECRET)
    monkeypatch.setenv("OPENAI_API_KEY", "sk-the-wrong-one")

    def leaky_responder(request: dict[str, Any]) -> str:
        if request["messages"][-1]["content"] == "leak":
            raise RuntimeError(f"server-side failure mentioning {SECRET}")
        return "fine"

    with FakeOpenAIServer(responder=leaky_responder, api_key=SECRET) as srv:
        backend = backend_for(srv, api_key_env="PROMPTOPT_TEST_KEY")
        with backend:
            ok, failed = backend.generate([ask("hello"), ask("leak")])
        assert ok.ok and ok.text == "fine"
        assert {r.headers["authorization"] for r in srv.chat_requests} == {f"Bearer {SECRET}"}
    assert failed.error is not None and "HTTP 500" in failed.error
    assert SECRET not in failed.error and "[redacted]" in failed.error
    shown = [backend.model_id, repr(backend), str(backend.describe()), failed.error, str(failed.to_dict())]
    assert not any(SECRET in text for text in shown)
    assert backend.describe()["api_key_env"] == "PROMPTOPT_TEST_KEY"


def test_wrong_key_is_a_non_retryable_401(monkeypatch: pytest.MonkeyPatch) -> None:
    with FakeOpenAIServer(api_key="sk-server-expects-another") as srv:
        completion = only(backend_for(srv), ask("hi"))
    assert completion.error is not None and "HTTP 401" in completion.error
    assert not completion.retryable
    assert SECRET not in completion.error


def test_missing_key_for_the_openai_api_is_a_clear_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("OPENAI_API_KEY")
    with pytest.raises(BackendError) as info:
        OpenAIBackend("gpt-4o-mini")
    assert "OPENAI_API_KEY" in str(info.value)
    assert info.value.retryable is False
    assert info.value.hint is not None and "base_url" in info.value.hint

    monkeypatch.setenv("OPENAI_API_KEY", SECRET)
    with pytest.raises(BackendError, match="MY_PROVIDER_KEY"):
        OpenAIBackend("gpt-4o-mini", api_key_env="MY_PROVIDER_KEY")


def test_missing_key_is_fine_for_a_custom_server(
    monkeypatch: pytest.MonkeyPatch, server: FakeOpenAIServer
) -> None:
    monkeypatch.delenv("OPENAI_API_KEY")
    completion = only(backend_for(server), ask("no key needed"))
    assert completion.ok and completion.text == "no key needed"
    assert server.chat_requests[0].headers["authorization"].startswith("Bearer ")


def test_base_url_from_environment(monkeypatch: pytest.MonkeyPatch, server: FakeOpenAIServer) -> None:
    monkeypatch.setenv("OPENAI_BASE_URL", server.base_url)
    backend = OpenAIBackend("fake-model")
    assert backend.model_id == f"openai/fake-model@127.0.0.1:{server.port}"
    assert only(backend, ask("via env")).text == "via env"


def test_model_id_and_describe_never_carry_credentials_or_query() -> None:
    assert OpenAIBackend("gpt-4o-mini").model_id == "openai/gpt-4o-mini"
    assert (
        OpenAIBackend("gpt-4o-mini", base_url="https://api.openai.com/v1/").model_id == "openai/gpt-4o-mini"
    )
    backend = OpenAIBackend(
        "llama", base_url="http://alice:hunter2@Models.Example.com:8080/v1?token=abc#frag"
    )
    assert backend.model_id == "openai/llama@models.example.com:8080"
    assert OpenAIBackend("qwen", base_url="https://vllm.internal/v1").model_id == "openai/qwen@vllm.internal"
    described = str(backend.describe()) + repr(backend)
    for secret in ("alice", "hunter2", "token", "abc", "frag", SECRET):
        assert secret not in described
    assert backend.describe()["base_url"] == "http://models.example.com:8080/v1"


@pytest.mark.parametrize(
    "kwargs",
    [{"concurrency": 0}, {"timeout": 0}, {"base_url": "localhost:8000"}, {"base_url": "ftp://host/v1"}],
)
def test_bad_configuration_raises(kwargs: dict[str, Any]) -> None:
    with pytest.raises(ConfigError):
        OpenAIBackend("m", **kwargs)


def test_closed_backend_refuses_work(server: FakeOpenAIServer) -> None:
    backend = backend_for(server)
    backend.close()
    backend.close()  # idempotent
    with pytest.raises(BackendError, match="closed"):
        backend.generate([ask("late")])


# -- failures become Completions --------------------------------------------------------------


def test_rate_limit_carries_retry_after_seconds() -> None:
    with FakeOpenAIServer(faults=FaultPlan(script=["rate_limit"], retry_after="7")) as srv:
        completion = only(backend_for(srv), ask("hi"))
    assert completion.error is not None and "HTTP 429" in completion.error
    assert completion.retryable is True
    assert completion.retry_after == 7.0
    assert completion.text == ""


def test_rate_limit_with_http_date_retry_after() -> None:
    later = email.utils.format_datetime(datetime.now(timezone.utc) + timedelta(seconds=30), usegmt=True)
    with FakeOpenAIServer(faults=FaultPlan(script=[Fault("rate_limit", retry_after=later)])) as srv:
        completion = only(backend_for(srv), ask("hi"))
    assert completion.retryable
    assert completion.retry_after is not None and 25 <= completion.retry_after <= 31


@pytest.mark.parametrize("status", ["500", "502", "503", "504"])
def test_server_errors_are_retryable(status: str) -> None:
    with FakeOpenAIServer(faults=FaultPlan(script=[status], retry_after="3")) as srv:
        completion = only(backend_for(srv), ask("hi"))
    assert completion.error is not None and f"HTTP {status}" in completion.error
    assert completion.retryable is True
    assert completion.retry_after == (3.0 if status == "503" else None)


@pytest.mark.parametrize("status", [400, 404, 422])
def test_other_client_errors_are_not_retryable(status: int) -> None:
    with FakeOpenAIServer(faults=FaultPlan(script=[Fault("status", status=status)])) as srv:
        completion = only(backend_for(srv), ask("hi"))
    assert completion.error is not None and f"HTTP {status}" in completion.error
    assert completion.retryable is False
    assert completion.retry_after is None


@pytest.mark.parametrize(
    ("fault", "expected"),
    [
        ("malformed_json", "malformed response"),
        ("empty_choices", "no choices"),
        ("truncated_stream", "connection to 127.0.0.1"),  # a body cut short: the peer closed mid-body
        ("reset", "connection"),
        ("disconnect", "connection"),
    ],
)
def test_broken_replies_are_retryable_errors(fault: str, expected: str) -> None:
    with FakeOpenAIServer(faults=FaultPlan(script=[fault])) as srv:
        completion = only(backend_for(srv), ask("hi"))
    assert completion.error is not None and expected in completion.error
    assert completion.retryable is True
    assert completion.text == ""


def test_timeout_is_a_retryable_error() -> None:
    with FakeOpenAIServer(faults=FaultPlan(script=["delay"], delay_s=5.0)) as srv:
        started = time.perf_counter()
        completion = only(backend_for(srv, timeout=0.3), ask("slow"))
        waited = time.perf_counter() - started
    assert completion.error is not None and "timed out" in completion.error
    assert completion.retryable is True
    assert waited < 5.0  # it gave up before the delayed reply came: not a speed check


def test_connection_refused_is_retryable() -> None:
    with FakeOpenAIServer() as srv:
        base_url = srv.base_url
    # the server is gone: nothing listens on that port any more
    completion = only(OpenAIBackend("m", base_url=base_url, timeout=2.0), ask("anyone?"))
    assert completion.error is not None and "connection" in completion.error
    assert completion.retryable


def test_one_failure_does_not_fail_the_batch() -> None:
    def responder(request: dict[str, Any]) -> str:
        text = request["messages"][-1]["content"]
        if text == "boom":
            raise ValueError("no")
        return text.upper()

    with FakeOpenAIServer(responder=responder) as srv, backend_for(srv) as backend:
        completions = backend.generate([ask("a"), ask("boom"), ask("c")])
    assert [c.text for c in completions] == ["A", "", "C"]
    assert [c.ok for c in completions] == [True, False, True]
    assert completions[1].retryable  # a 500 may pass


# -- concurrency ------------------------------------------------------------------------------


def all_at_once(parties: int) -> Any:
    """A responder that answers only once ``parties`` requests are in the server together.

    Requests sent one after another never get there: the barrier breaks after its timeout
    and every reply is a 500, so a backend that does not overlap its requests fails the
    test however fast or slow the machine is (no timing is asserted).
    """
    barrier = threading.Barrier(parties, timeout=30)

    def respond(request: dict[str, Any]) -> str:
        barrier.wait()
        return str(request["messages"][-1]["content"])

    return respond


def test_requests_of_a_batch_overlap() -> None:
    with FakeOpenAIServer(responder=all_at_once(8)) as srv, backend_for(srv, concurrency=8) as backend:
        completions = backend.generate([ask(f"q{i}") for i in range(8)])
    assert [c.error for c in completions] == [None] * 8
    assert [c.text for c in completions] == [f"q{i}" for i in range(8)]
    assert srv.max_in_flight == 8


def test_concurrency_bounds_requests_in_flight() -> None:
    with FakeOpenAIServer(latency_s=0.05) as srv, backend_for(srv, concurrency=2) as backend:
        threads = [
            threading.Thread(target=backend.generate, args=([ask(f"{t}-{i}") for i in range(4)],))
            for t in range(2)
        ]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
    assert srv.chat_request_count == 8
    assert srv.max_in_flight == 2  # two batches from two threads share one bound


def test_generate_each_reports_answers_as_they_come_back() -> None:
    # The server answers request k only once request k - 2 was reported: a backend that
    # reports at the end never gets past request 2 (and the test fails after 20 s), and no
    # timing is assumed, so a loaded machine cannot merge the reports.
    reported = [threading.Event() for _ in range(6)]

    def after_the_one_two_back(request: dict[str, Any]) -> str:
        text = request["messages"][-1]["content"]
        index = int(text.split()[1])
        if index >= 2 and not reported[index - 2].wait(20):
            return f"q {index} was answered before q {index - 2} was reported"
        return text

    def report(done: list[tuple[int, Any]]) -> None:
        reports.append(([i for i, _ in done], srv.chat_request_count))
        for i, _ in done:
            reported[i].set()

    with (
        FakeOpenAIServer(responder=after_the_one_two_back) as srv,
        backend_for(srv, concurrency=2) as backend,
    ):
        reports: list[tuple[list[int], int]] = []  # (indices, requests the server had received)
        results = backend.generate_each([ask(f"q {i}") for i in range(6)], report)
    assert [c.text for c in results] == [f"q {i}" for i in range(6)]  # in order, none waited in vain
    order = [i for indices, _ in reports for i in indices]
    assert sorted(order) == list(range(6)) and len(reports) >= 3  # two at a time, not at the end
    assert reports[0][1] <= 4  # the first answers were reported before the last requests went out


def test_batch_order_is_preserved_when_replies_finish_out_of_order() -> None:
    def slow_for_early_items(request: dict[str, Any]) -> str:
        index = int(request["messages"][-1]["content"])
        time.sleep((7 - index) * 0.02)
        return f"answer {index}"

    with FakeOpenAIServer(responder=slow_for_early_items) as srv, backend_for(srv) as backend:
        completions = backend.generate([ask(str(i)) for i in range(8)])
    assert [c.text for c in completions] == [f"answer {i}" for i in range(8)]


def test_server_handles_64_concurrent_connections() -> None:
    with FakeOpenAIServer(responder=all_at_once(64)) as srv, backend_for(srv, concurrency=64) as backend:
        completions = backend.generate([ask(f"q{i}") for i in range(64)])
    assert [c.error for c in completions] == [None] * 64
    assert [c.text for c in completions] == [f"q{i}" for i in range(64)]
    assert srv.max_in_flight == 64


# -- Retry-After parsing and the test server itself -----------------------------------------------


def test_parse_retry_after_forms() -> None:
    now = datetime(2025, 1, 1, 12, 0, 0, tzinfo=timezone.utc)
    assert parse_retry_after({"Retry-After": "2"}) == 2.0
    assert parse_retry_after({"retry-after": " 1.5 "}) == 1.5
    assert parse_retry_after({"Retry-After": "-3"}) == 0.0
    assert parse_retry_after({"retry-after-ms": "250", "retry-after": "9"}) == 0.25
    assert parse_retry_after({"Retry-After": "Wed, 01 Jan 2025 12:00:10 GMT"}, now=now) == 10.0
    assert parse_retry_after({"Retry-After": "Wed, 01 Jan 2025 11:00:00 GMT"}, now=now) == 0.0
    assert parse_retry_after({"Retry-After": "soon"}) is None
    assert parse_retry_after({}) is None


def test_seeded_fault_rates_repeat_exactly() -> None:
    plan = FaultPlan(rates={"rate_limit": 0.3, "server_error": 0.2}, seed=11)

    def outcomes() -> list[tuple[str | None, bool]]:
        with FakeOpenAIServer(faults=plan) as srv, backend_for(srv, concurrency=8) as backend:
            completions = backend.generate([ask(f"q{i}") for i in range(40)])
        return [(c.error.split(":")[0] if c.error else None, c.retryable) for c in completions]

    first, second = outcomes(), outcomes()
    assert first == second
    failures = sum(1 for error, _ in first if error)
    assert 8 <= failures <= 32  # about half of 40 at a 50% fault rate


def test_server_lists_models_and_streams() -> None:
    with FakeOpenAIServer(models=("alpha", "beta")) as srv:
        client = openai.OpenAI(base_url=srv.base_url, api_key="x", max_retries=0)
        assert [m.id for m in client.models.list()] == ["alpha", "beta"]
        stream = client.chat.completions.create(
            model="alpha",
            messages=[{"role": "user", "content": "streamed reply here"}],
            stream=True,
            stream_options={"include_usage": True},
        )
        chunks = list(stream)
        client.close()
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text == "streamed reply here"
    assert chunks[-1].usage is not None and chunks[-1].usage.completion_tokens == 3


def test_fault_plan_rejects_nonsense() -> None:
    with pytest.raises(ValueError, match="unknown fault kind"):
        FaultPlan(rates={"gremlins": 0.1})
    with pytest.raises(ValueError, match="sum"):
        FaultPlan(rates={"reset": 0.6, "delay": 0.6})


def test_retry_wrapper_recovers_from_injected_faults_over_http() -> None:
    """The seam the retry wrapper relies on: retryable failures with the server's wait."""
    from promptopt.backends.retry import RetryingBackend

    waits: list[float] = []
    plan = FaultPlan(script=["rate_limit", "ok", "503", "ok", "ok"], retry_after="0.25")
    with FakeOpenAIServer(faults=plan) as srv, backend_for(srv, concurrency=1) as inner:
        backend = RetryingBackend(inner, max_attempts=3, base_delay=0.0, sleep=waits.append)
        completions = backend.generate([ask("a"), ask("b"), ask("c")])
    assert [c.text for c in completions] == ["a", "b", "c"]
    assert srv.chat_request_count == 5
    assert waits and all(w >= 0.25 for w in waits)


def test_command_line_server_serves_and_stops_on_sigterm() -> None:
    import re
    import signal
    import subprocess
    import sys

    process = subprocess.Popen(
        [sys.executable, "-m", "promptopt.testing.openai_server", "--port", "0", "--fault", "503=1.0"],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert process.stdout is not None
        match = re.search(r"http://\S+/v1", process.stdout.readline())
        assert match, "the server did not print its URL"
        completion = only(OpenAIBackend("m", base_url=match.group(0), timeout=5.0), ask("hi"))
        assert completion.error is not None and "HTTP 503" in completion.error and completion.retryable
        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=5) == 0
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
