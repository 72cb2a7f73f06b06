"""The backend interface: batch-first text generation for chat models."""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Sequence

from promptopt.types import Completion, GenerationRequest


class Backend(ABC):
    """A chat model that answers a batch of requests.

    Contract:

    - ``generate(requests)`` returns exactly one :class:`Completion` per request, in
      order. A request that fails returns a ``Completion`` with ``error`` set (and
      ``retryable`` when trying again may help); it does not fail the batch.
    - Configuration problems that no retry can fix (unknown model, missing package)
      raise :class:`promptopt.errors.BackendError` or ``ModelError`` instead.
    - ``model_id`` names the model in cache keys and in the store: two backends with
      the same ``model_id`` must give the same output for the same greedy request.
    - Backends hold no secrets in their ``describe()`` output; it is stored with runs.

    Caching and retries are wrappers (:mod:`promptopt.backends.cache`,
    :mod:`promptopt.backends.retry`), never code inside a backend.
    """

    @property
    @abstractmethod
    def model_id(self) -> str:
        """Stable model name, e.g. ``local/qwen2.5-coder-1.5b`` or ``openai/gpt-4o-mini``."""

    @abstractmethod
    def generate(self, requests: Sequence[GenerationRequest]) -> list[Completion]:
        """Answer every request; see the class docstring for the contract."""

    def describe(self) -> dict[str, object]:
        """Facts worth storing with a run (no secrets)."""
        return {"model": self.model_id, "backend": type(self).__name__}

    def remaining_calls(self) -> int | None:
        """Requests this backend will still accept before refusing (a call budget), or
        ``None`` for no such limit; the executor sizes its calls by it."""
        return None

    def close(self) -> None:  # noqa: B027 - an optional hook, a no-op by default
        """Release resources (connections, model weights). Idempotent."""

    def __enter__(self) -> Backend:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
