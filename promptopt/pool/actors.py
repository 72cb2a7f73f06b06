"""The Ray actors of the pool, written as plain classes and made remote where they are
spawned (so that importing this module does not import Ray).

- :class:`BackendWorker` serves any :class:`~promptopt.backends.base.Backend`, built in
  the worker from a picklable factory (or shipped whole when it is picklable). With
  :class:`Batching` it is the *one model actor* of a local model: concurrent calls from
  many candidates are queued and generated together, up to ``max_batch`` requests or
  after ``max_wait_ms``, one batch at a time.
- :class:`ChatWorker` keeps many OpenAI-compatible requests in flight on one event loop.

Both ask the provider's cluster-wide limiter (:mod:`promptopt.pool.ratelimit`) before
sending, once per call, and tell it about ``Retry-After``.
"""

from __future__ import annotations

import asyncio
import os
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from promptopt.backends.base import Backend
from promptopt.pool.http import AsyncChatClient, ChatEndpoint
from promptopt.pool.ratelimit import estimate_tokens
from promptopt.types import Completion, GenerationRequest

BackendSource = Backend | Callable[[], Backend]
_LOCKS = {type(threading.Lock()): threading.Lock, type(threading.RLock()): threading.RLock}


class ShippedBackend:
    """Builds, in a worker, a copy of a backend object made in the driver. Locks cannot
    be pickled, so they are left out and each copy gets fresh ones (``FakeBackend`` and
    other plain backends hold one); everything else travels as it is."""

    def __init__(self, backend: Backend) -> None:
        self.cls = type(backend)
        self.state = {k: v for k, v in vars(backend).items() if type(v) not in _LOCKS}
        self.locks = {k: _LOCKS[type(v)] for k, v in vars(backend).items() if type(v) in _LOCKS}

    def __call__(self) -> Backend:
        backend = self.cls.__new__(self.cls)
        backend.__dict__.update(self.state)
        for name, make in self.locks.items():
            setattr(backend, name, make())
        return backend


@dataclass(frozen=True)
class Batching:
    """Dynamic batching of one model actor: a batch is generated when ``max_batch``
    requests are queued, or ``max_wait_ms`` after the oldest queued one arrived."""

    max_batch: int = 16
    max_wait_ms: float = 20.0

    def __post_init__(self) -> None:
        if self.max_batch < 1:
            raise ValueError(f"max_batch must be at least 1, got {self.max_batch}")
        if self.max_wait_ms < 0:
            raise ValueError(f"max_wait_ms must be >= 0, got {self.max_wait_ms}")


class _Limited:
    """Asks the provider's limiter before sending and reports what the provider said."""

    def _init_limiter(self, limiter: Any | None) -> None:
        self._limiter = limiter  # the provider's limiter actor (owned by the driver), or None

    async def _admit(self, requests: Sequence[GenerationRequest]) -> int:
        if self._limiter is None:
            return 0
        tokens = sum(estimate_tokens(sum(len(m.content) for m in r.messages), r.max_tokens) for r in requests)
        wait = await self._limiter.acquire.remote(len(requests), tokens)
        if wait > 0:
            await asyncio.sleep(wait)
        return tokens

    def _report(self, estimated: int, completions: Sequence[Completion]) -> None:
        if self._limiter is None:
            return
        waits = [c.retry_after for c in completions if c.retry_after is not None]
        if waits:
            self._limiter.pause.remote(max(waits))
        used = sum(c.tokens_in + c.tokens_out for c in completions if c.ok)
        if used and used != estimated:
            self._limiter.settle.remote(used - estimated)


class BackendWorker(_Limited):
    """Serves a Backend; see the module docstring."""

    def __init__(
        self,
        source: BackendSource,
        batching: Batching | None = None,
        limiter: Any | None = None,
    ) -> None:
        self.backend: Backend = source if isinstance(source, Backend) else source()
        self.batching = batching
        self._init_limiter(limiter)
        self._queue: list[tuple[list[GenerationRequest], asyncio.Future[list[Completion]], float]] = []
        self._queued = 0
        self._arrived: asyncio.Event | None = None
        self._batcher: asyncio.Task[None] | None = None
        self.batches = 0
        self.batched_requests = 0

    async def generate(self, requests: list[GenerationRequest]) -> list[Completion]:
        estimated = await self._admit(requests)
        if self.batching is None:
            completions = await asyncio.to_thread(self.backend.generate, requests)
        else:
            completions = await self._enqueue(requests)
        self._report(estimated, completions)
        return completions

    async def _enqueue(self, requests: list[GenerationRequest]) -> list[Completion]:
        loop = asyncio.get_running_loop()
        future: asyncio.Future[list[Completion]] = loop.create_future()
        self._queue.append((requests, future, loop.time()))
        self._queued += len(requests)
        if self._batcher is None:
            self._arrived = asyncio.Event()
            self._batcher = loop.create_task(self._run_batches())
        assert self._arrived is not None
        self._arrived.set()
        return await future

    async def _run_batches(self) -> None:
        assert self._arrived is not None and self.batching is not None
        loop = asyncio.get_running_loop()
        max_batch, max_wait = self.batching.max_batch, self.batching.max_wait_ms / 1000
        while True:
            while not self._queue:
                self._arrived.clear()
                await self._arrived.wait()
            deadline = self._queue[0][2] + max_wait
            while self._queued < max_batch and (remaining := deadline - loop.time()) > 0:
                self._arrived.clear()
                try:
                    await asyncio.wait_for(self._arrived.wait(), remaining)
                except asyncio.TimeoutError:
                    break
            taken: list[tuple[list[GenerationRequest], asyncio.Future[list[Completion]], float]] = []
            size = 0
            while self._queue and (not taken or size + len(self._queue[0][0]) <= max_batch):
                item = self._queue.pop(0)
                taken.append(item)
                size += len(item[0])
            self._queued -= size
            flat = [r for requests, _, _ in taken for r in requests]
            try:
                completions = await asyncio.to_thread(self.backend.generate, flat)
            except Exception as exc:  # the callers get the error; the batcher goes on
                for _, future, _ in taken:
                    if not future.done():
                        future.set_exception(exc)
                continue
            self.batches += 1
            self.batched_requests += size
            position = 0
            for requests, future, _ in taken:
                if not future.done():
                    future.set_result(completions[position : position + len(requests)])
                position += len(requests)

    def model_id(self) -> str:
        return self.backend.model_id

    def describe(self) -> dict[str, object]:
        return self.backend.describe()

    def pid(self) -> int:
        return os.getpid()

    def node_id(self) -> str:
        return _node_id()

    def stats(self) -> dict[str, Any]:
        return {"batches": self.batches, "batched_requests": self.batched_requests, "queued": self._queued}


class SecretHolder:
    """Holds the API key in the driver's cluster for the chat workers to fetch.

    The key must not travel in a ``runtime_env`` (Ray's runtime-env agent writes every
    ``env_vars`` it creates to its log, readable by anyone on the node) nor in an actor's
    constructor arguments. It is handed over in a method call after creation, which Ray
    keeps in memory only, and each worker (restarts included) asks for it on first use."""

    def __init__(self) -> None:
        self._secret = ""

    def put(self, secret: str) -> None:
        self._secret = secret

    def get(self) -> str:
        return self._secret


class ChatWorker(_Limited):
    """Many OpenAI-compatible requests in flight from one event loop."""

    def __init__(
        self, endpoint: ChatEndpoint, limiter: Any | None = None, secrets: Any | None = None
    ) -> None:
        self.endpoint = endpoint
        self._secrets = secrets  # a SecretHolder actor, or None: the key is in this process's environment
        self._init_limiter(limiter)
        self._client: AsyncChatClient | None = None
        self.completed = 0
        self.started = time.monotonic()

    async def generate(self, requests: list[GenerationRequest]) -> list[Completion]:
        if self._client is None:  # made on the actor's event loop, where it is used
            secret = (await self._secrets.get.remote()) if self._secrets is not None else ""
            self._client = AsyncChatClient(self.endpoint, secret=secret or None)
        estimated = await self._admit(requests)
        completions = list(await asyncio.gather(*(self._client.complete(r) for r in requests)))
        self._report(estimated, completions)
        self.completed += len(completions)
        return completions

    def pid(self) -> int:
        return os.getpid()

    def node_id(self) -> str:
        return _node_id()

    def stats(self) -> dict[str, Any]:
        return {"completed": self.completed}


def _node_id() -> str:
    """The Ray node this actor runs on (where a cluster put it)."""
    import ray

    return str(ray.get_runtime_context().get_node_id())
