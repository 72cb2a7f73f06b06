"""The driver side of the pool: a :class:`Backend` whose ``generate`` fans chunks of
requests out to Ray actors.

Everything else stays in the driver — the executor (render, extract, vote), the response
cache, retries, the budget and every store write — so a parallel run has exactly the
semantics of a serial one; only the model calls move. The wrappers are not written for
concurrent use, so the driver threads that evaluate candidates take turns through a
:class:`DriverLock` and let go of it only while they wait for actors (see
:mod:`promptopt.pool.evaluator`).

A worker that dies mid-call (its process killed, its node lost) is restarted by Ray
(``max_restarts``) and the chunk it held is sent again, to the least busy worker, at most
``max_attempts`` times; a worker whose restarts are exhausted is replaced. What still
fails comes back as a retryable failed :class:`Completion`, as the Backend contract asks.
"""

from __future__ import annotations

import contextlib
import logging
import threading
import time
from collections import deque
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import asdict, dataclass
from typing import Any

from promptopt.backends.base import Backend, OnResults, StreamingBackend
from promptopt.errors import ClusterLostError, ConfigError, MissingDependencyError, PromptOptError
from promptopt.pool.actors import (
    BackendSource,
    BackendWorker,
    Batching,
    ChatWorker,
    SecretHolder,
    ShippedBackend,
)
from promptopt.pool.http import ChatEndpoint
from promptopt.pool.placement import _placement, on_driver_node
from promptopt.pool.ratelimit import NAMESPACE, RateLimit, limiter_actor
from promptopt.pool.watch import ClusterWatch
from promptopt.types import Completion, GenerationRequest

#: Seconds over which ``throughput_rps`` is measured.
THROUGHPUT_WINDOW_S = 10.0


def import_ray() -> Any:
    try:
        import ray
    except ImportError as exc:
        raise MissingDependencyError(
            "the Ray evaluation pool needs the 'ray' package",
            hint="pip install 'promptopt[ray]'",
        ) from exc
    return ray


def ensure_ray(address: str | None, num_cpus: int | None = None) -> bool:
    """Connect to Ray: ``address`` ``"auto"`` joins the cluster of this machine,
    ``"ray://host:port"`` a remote one through Ray Client, ``None`` starts a local Ray
    with ``num_cpus`` CPUs unless one is already running in this process. Returns whether
    this call started it (and so should shut it down)."""
    ray = import_ray()
    if ray.is_initialized():
        return False
    options: dict[str, Any] = {
        "namespace": NAMESPACE,
        "include_dashboard": False,
        "logging_level": logging.WARNING,
        "log_to_driver": False,
    }
    if address is None:
        options["num_cpus"] = num_cpus or 2
    else:
        options["address"] = address
    try:
        _init(ray, options)
    except (ConnectionError, RuntimeError, ValueError) as exc:
        raise ConfigError(
            f"cannot connect to Ray at {address!r}: {exc}",
            hint="start a cluster with `ray start --head`, or omit --ray-address to start a local one",
        ) from exc
    return address is None


def _init(ray: Any, options: dict[str, Any], attempts: int = 3) -> None:
    """``ray.init``; through Ray Client, tried again when the head's client server failed
    to start this client's server (seen on a freshly started, loaded head)."""
    for attempt in range(1, attempts + 1):
        try:
            ray.init(**options)
            return
        except ConnectionError as exc:
            if attempt == attempts or "Starting Ray client server failed" not in str(exc):
                raise
            time.sleep(2.0 * attempt)


class DriverLock:
    """A lock for driver code that its holder lets go of while it waits on actors.

    The evaluator's threads hold it while they render, read the cache, count the budget
    and store results; :meth:`released` lets others run while this thread waits for
    model calls. A thread that does not hold it (a serial caller) waits without it."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._local = threading.local()

    def __enter__(self) -> DriverLock:
        self._lock.acquire()
        self._local.held = True
        return self

    def __exit__(self, *exc: object) -> None:
        self._local.held = False
        self._lock.release()

    @contextlib.contextmanager
    def released(self) -> Iterator[None]:
        if not getattr(self._local, "held", False):
            yield
            return
        self._local.held = False
        self._lock.release()
        try:
            yield
        finally:
            self._lock.acquire()
            self._local.held = True

    def sleep(self, seconds: float) -> None:
        """``time.sleep`` without holding the lock (give it to ``RetryingBackend(sleep=...)``)."""
        with self.released():
            time.sleep(seconds)


@dataclass(frozen=True)
class PoolStats:
    """What a progress display shows about the pool."""

    workers: int  # actors in the pool
    in_flight: int  # requests sent to actors and not yet answered
    completed: int  # requests answered since the pool started
    throughput_rps: float  # answered requests per second over the last 10 s
    resubmitted: int  # chunks sent again after their worker died
    replaced_workers: int  # actors replaced after their restarts ran out
    elapsed_s: float

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class _Slot:
    actor: Any
    outstanding: int = 0
    failures: int = 0


class RayBackend(StreamingBackend):
    """A Backend served by ``workers`` Ray actors; build it with :meth:`wrapping`,
    :meth:`openai` or :func:`promptopt.pool.pool_backend`.

    ``chunk_size`` requests travel per actor call; at most ``max_in_flight`` requests
    are out at once over all calls (from all threads)."""

    def __init__(
        self,
        spawn: Callable[[], Any],
        *,
        workers: int,
        ray_address: str | None = None,
        num_cpus: int | None = None,
        chunk_size: int = 8,
        max_in_flight: int = 64,
        max_attempts: int = 5,
        model_id: str | None = None,
        description: dict[str, object] | None = None,
    ) -> None:
        if workers < 1:
            raise ConfigError(f"workers must be at least 1, got {workers}")
        if chunk_size < 1 or max_in_flight < 1 or max_attempts < 1:
            raise ConfigError("chunk_size, max_in_flight and max_attempts must be at least 1")
        self._ray = import_ray()
        #: Shut Ray down on close: this pool started it (set by the constructors).
        self.owns_ray = ensure_ray(ray_address, num_cpus)
        self._spawn = spawn
        self.chunk_size = chunk_size
        self.max_in_flight = max_in_flight
        self.max_attempts = max_attempts
        self.driver_lock = DriverLock()
        self._cond = threading.Condition()
        self._in_flight = 0
        self._completed = 0
        self._resubmitted = 0
        self._replaced = 0
        self._recent: deque[tuple[float, int]] = deque()
        self._started = time.monotonic()
        self._closed = False
        #: Notices a cluster this driver joined going away (None for a local Ray).
        self._watch = ClusterWatch.of(ray_address, self._ray)
        self._slots = [_Slot(spawn()) for _ in range(workers)]
        if model_id is None or description is None:
            first = self._slots[0].actor
            model_id = model_id or self._ray.get(first.model_id.remote())
            description = description or self._ray.get(first.describe.remote())
        self._model_id = model_id
        self._description = dict(description)

    # -- construction ----------------------------------------------------------------

    @classmethod
    def wrapping(
        cls,
        source: BackendSource,
        *,
        workers: int = 2,
        ray_address: str | None = None,
        batching: Batching | None = None,
        rate_limit: RateLimit | None = None,
        provider: str | None = None,
        restarts: int = 2,
        worker_cpus: float = 0,
        num_cpus: int | None = None,
        chunk_size: int = 8,
        max_in_flight: int = 64,
        max_concurrency: int = 64,
        resources: Mapping[str, float] | None = None,
    ) -> RayBackend:
        """Serve ``source`` — a picklable Backend, or a picklable function that builds one
        in each worker (use this for a local model: it is loaded in the worker, not here).
        With ``batching`` use ``workers=1``: one model actor batches for everyone.
        ``resources`` (Ray custom resources, e.g. ``{"worker_node": 0.01}``) pins each
        worker to the nodes that offer them."""
        ray = import_ray()
        started = ensure_ray(ray_address, num_cpus)
        remote = ray.remote(BackendWorker).options(
            max_restarts=restarts, max_concurrency=max_concurrency, num_cpus=worker_cpus,
            **_placement(resources),
        )  # fmt: skip
        provider = provider or (source.model_id if isinstance(source, Backend) else None)
        source = _shippable(source)
        limiter = _limiter(provider, rate_limit)

        def spawn() -> Any:
            return remote.remote(source, batching, limiter)

        backend = cls(
            spawn, workers=workers, ray_address=ray_address, num_cpus=num_cpus, chunk_size=chunk_size,
            max_in_flight=max_in_flight,
        )  # fmt: skip
        backend.owns_ray = backend.owns_ray or started
        return backend

    @classmethod
    def openai(
        cls,
        model: str,
        *,
        base_url: str | None = None,
        api_key_env: str = "OPENAI_API_KEY",
        workers: int = 2,
        concurrency: int = 32,
        timeout: float = 60.0,
        rate_limit: RateLimit | None = None,
        ray_address: str | None = None,
        restarts: int = 2,
        num_cpus: int | None = None,
        chunk_size: int = 8,
        backlog: float = 2.0,
        resources: Mapping[str, float] | None = None,
    ) -> RayBackend:
        """An OpenAI-compatible endpoint served by ``workers`` async actors, each with up
        to ``concurrency`` requests in flight, all under one cluster-wide ``rate_limit``.
        ``model_id`` is the one :class:`OpenAIBackend` would use, so caches are shared.

        The driver hands the workers ``backlog`` times what they may send at once, so that
        a worker starts its next request the moment one returns, without waiting for a
        round trip to the driver; the server never sees more than ``workers × concurrency``.
        ``resources`` pins the workers to the nodes that offer them, as in :meth:`wrapping`."""
        import os

        from promptopt.backends.openai_backend import BASE_URL_ENV, DEFAULT_BASE_URL, OpenAIBackend

        probe = OpenAIBackend(model, base_url=base_url, api_key_env=api_key_env, timeout=timeout)
        model_id, description = probe.model_id, probe.describe()
        probe.close()
        resolved = (base_url or os.environ.get(BASE_URL_ENV) or DEFAULT_BASE_URL).rstrip("/")
        endpoint = ChatEndpoint(model, resolved, api_key_env, timeout, max_connections=concurrency)
        ray = import_ray()
        started = ensure_ray(ray_address, num_cpus)
        options: dict[str, Any] = {
            "max_restarts": restarts,
            "max_concurrency": 1000,  # chunk calls waiting on the event loop are cheap
            "num_cpus": 0,
            **_placement(resources),
        }
        # Workers on other nodes do not see this process's environment, so the key is handed
        # over in a method call (never in a runtime_env: Ray logs those in plain text).
        key = os.environ.get(api_key_env)
        secrets = None
        if key:
            secrets = ray.remote(SecretHolder).options(num_cpus=0, **on_driver_node()).remote()
            ray.get(secrets.put.remote(key))
        remote = ray.remote(ChatWorker).options(**options)
        limiter = _limiter(model_id, rate_limit)

        def spawn() -> Any:
            return remote.remote(endpoint, limiter, secrets)

        backend = cls(
            spawn, workers=workers, ray_address=ray_address, num_cpus=num_cpus, chunk_size=chunk_size,
            max_in_flight=max(1, int(backlog * workers * concurrency)), model_id=model_id, description=description,
        )  # fmt: skip
        backend.owns_ray = backend.owns_ray or started
        return backend

    # -- Backend interface -------------------------------------------------------------

    @property
    def model_id(self) -> str:
        return self._model_id

    def describe(self) -> dict[str, object]:
        return {**self._description, "pool": "ray", "workers": len(self._slots)}

    def _generate_each(
        self, requests: Sequence[GenerationRequest], on_results: OnResults | None
    ) -> list[Completion]:
        """Reports each chunk's answers as its worker returns them."""
        if self._closed:
            raise PromptOptError("the Ray pool is closed")
        requests = list(requests)
        results: list[Completion | None] = [None] * len(requests)
        # (offset of the chunk, attempt, the slot that failed it last)
        todo: deque[tuple[int, int, _Slot | None]] = deque(
            (start, 1, None) for start in range(0, len(requests), self.chunk_size)
        )
        pending: dict[Any, tuple[int, int, _Slot, int]] = {}  # ref -> (offset, attempt, slot, size)
        ray = self._ray
        try:
            while todo or pending:
                while todo:
                    offset, attempt, failed_on = todo[0]
                    size = len(requests[offset : offset + self.chunk_size])
                    if not self._reserve(size, block=not pending):
                        break
                    todo.popleft()
                    slot = self._least_busy(avoid=failed_on)
                    slot.outstanding += size
                    ref = slot.actor.generate.remote(requests[offset : offset + size])
                    pending[ref] = (offset, attempt, slot, size)
                if not pending:
                    continue
                with self.driver_lock.released():
                    ready = self._wait_one(list(pending))
                for ref in ready:
                    offset, attempt, slot, size = pending.pop(ref)
                    slot.outstanding -= size
                    self._release(size)
                    try:
                        answers = ray.get(ref)
                    except (ray.exceptions.RayActorError, ray.exceptions.WorkerCrashedError,
                            ray.exceptions.ObjectLostError) as exc:  # fmt: skip
                        self._worker_failed(slot)
                        if attempt < self.max_attempts:
                            # Give Ray time to restart the worker elsewhere (a lost node's
                            # actors fail every call at once until the cluster notices).
                            with self.driver_lock.released():
                                time.sleep(min(2.0 ** (attempt - 1), 8.0))
                            self._resubmitted += 1
                            todo.append((offset, attempt + 1, slot))
                        else:
                            failure = _worker_failure(exc, attempt)
                            results[offset : offset + size] = [failure] * size
                            _report(on_results, offset, [failure] * size)
                        continue
                    except ray.exceptions.RayTaskError as exc:
                        cause = getattr(exc, "cause", None)
                        raise (cause if isinstance(cause, Exception) else exc) from None
                    slot.failures = 0
                    results[offset : offset + size] = answers
                    self._count_done(size)
                    _report(on_results, offset, answers)
        except BaseException as exc:
            lost_error = self._lost(exc) if self._disconnected(exc) else None
            lost = self._watch is not None and self._watch.lost.is_set()
            for ref, (_, _, slot, size) in pending.items():
                slot.outstanding -= size
                self._release(size)
                if not lost:  # a lost cluster cannot be asked to cancel (it would hang)
                    with contextlib.suppress(Exception):
                        ray.cancel(ref)
            if lost_error is not None:
                raise lost_error from None
            raise
        assert all(r is not None for r in results)
        return results  # type: ignore[return-value]

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        if self._watch is not None:
            self._watch.stop()
            if self._watch.lost.is_set():  # nothing to clean up there, and asking would hang
                return
        ray = self._ray
        for slot in self._slots:
            with contextlib.suppress(Exception):
                ray.kill(slot.actor)
        if self.owns_ray and ray.is_initialized():
            ray.shutdown()

    def _wait_one(self, refs: list[Any]) -> list[Any]:
        """The refs ready among ``refs`` (at least one), or :class:`ClusterLostError` once the
        cluster is gone: Ray itself would wait for a lost head for a minute, then end this
        process without a word, leaving the run marked running."""
        while True:
            try:
                ready, _ = self._ray.wait(refs, num_returns=1, timeout=1.0)
            except ConnectionError as exc:  # Ray Client
                raise self._lost(exc) from None
            if ready:
                return list(ready)
            if self._watch is not None and self._watch.lost.is_set():
                raise self._lost(None)

    def _disconnected(self, exc: BaseException) -> bool:
        """Whether ``exc`` means the joined cluster is gone. Ray Client raises
        ``ConnectionError`` from any call (a get, a wait, a submission, a worker's
        replacement) once its connection is gone for good, and after that a bare
        ``Exception`` ("Ray Client is not connected") from the next call, whichever thread
        noticed first; a driver on a node of the cluster sees the watch fire."""
        if isinstance(exc, ConnectionError):
            return True
        if self._watch is None or not isinstance(exc, Exception):
            return False  # a local Ray cannot be lost; an interrupt stays an interrupt
        if self._watch.lost.is_set():
            return True
        try:
            return not self._ray.is_initialized()
        except Exception:
            return True

    def _lost(self, cause: BaseException | None) -> ClusterLostError:
        if self._watch is not None:
            self._watch.lost.set()
        where = self._watch.target if self._watch is not None else "the cluster"
        detail = f" ({type(cause).__name__}: {cause})" if cause is not None else ""
        return ClusterLostError(
            f"lost the Ray cluster at {where}{detail}; the run is interrupted, its results so far are stored",
            hint="once the cluster is back, continue with `promptopt search --resume RUN_ID` (see `promptopt runs`)",
        )

    # -- pool bookkeeping ----------------------------------------------------------------

    def stats(self) -> PoolStats:
        now = time.monotonic()
        with self._cond:
            while self._recent and self._recent[0][0] < now - THROUGHPUT_WINDOW_S:
                self._recent.popleft()
            window = min(THROUGHPUT_WINDOW_S, now - self._started) or 1e-9
            recent = sum(n for _, n in self._recent)
            return PoolStats(
                workers=len(self._slots), in_flight=self._in_flight, completed=self._completed,
                throughput_rps=round(recent / window, 2), resubmitted=self._resubmitted,
                replaced_workers=self._replaced, elapsed_s=round(now - self._started, 3),
            )  # fmt: skip

    def worker_pids(self) -> list[int]:
        """Process ids of the workers (for tests that kill one)."""
        return [int(pid) for pid in self._ray.get([s.actor.pid.remote() for s in self._slots])]

    def worker_stats(self) -> list[dict[str, Any]]:
        return list(self._ray.get([s.actor.stats.remote() for s in self._slots]))

    def _reserve(self, size: int, *, block: bool) -> bool:
        size = min(size, self.max_in_flight)
        with self._cond:
            if self._in_flight + size <= self.max_in_flight:
                self._in_flight += size
                return True
        if not block:
            return False
        # Never wait for the condition while holding the driver lock (nor the reverse).
        with self.driver_lock.released(), self._cond:
            while self._in_flight + size > self.max_in_flight:
                self._cond.wait()
            self._in_flight += size
        return True

    def _release(self, size: int) -> None:
        with self._cond:
            self._in_flight -= min(size, self.max_in_flight)
            self._cond.notify_all()

    def _count_done(self, size: int) -> None:
        with self._cond:
            self._completed += size
            self._recent.append((time.monotonic(), size))

    def _least_busy(self, avoid: _Slot | None = None) -> _Slot:
        """The worker with the fewest requests out; a chunk whose worker died goes to
        another one when there is another."""
        return min(self._slots, key=lambda s: (s is avoid, s.outstanding))

    def _worker_failed(self, slot: _Slot) -> None:
        """Ray restarts a dead worker up to ``max_restarts`` times; one that keeps dying
        (restarts exhausted, node gone) is replaced by a new actor."""
        slot.failures += 1
        if slot.failures > 2:
            with contextlib.suppress(Exception):
                self._ray.kill(slot.actor)
            slot.actor = self._spawn()
            slot.failures = 0
            self._replaced += 1


def _worker_failure(exc: BaseException, attempts: int) -> Completion:
    return Completion(
        text="",
        finish_reason="error",
        error=f"pool worker died {attempts} times on this request: {type(exc).__name__}",
        retryable=True,
    )


def _shippable(source: BackendSource) -> BackendSource:
    """``source`` as something Ray can send to workers: itself when it pickles, else a
    :class:`ShippedBackend` copy of a backend object; a clear error otherwise."""
    from ray import cloudpickle

    try:
        cloudpickle.dumps(source)
        return source
    except Exception as exc:
        error: Exception = exc
    if isinstance(source, Backend):
        shipped = ShippedBackend(source)
        try:
            cloudpickle.dumps(shipped)
            return shipped
        except Exception as exc:
            error = exc
    raise ConfigError(
        f"the backend {getattr(source, '__name__', type(source).__name__)} cannot be sent to Ray workers ({error})",
        hint="build it in the workers instead: promptopt.pool.pool_backend(model, workers=...) or "
        "RayBackend.wrapping(<a function that builds the backend>)",
    )


def _limiter(provider: str | None, limit: RateLimit | None) -> Any | None:
    """The provider's limiter actor, owned by this driver so that it outlives any worker
    (a worker that dies and restarts keeps using it)."""
    if limit is None or limit.unlimited:
        return None
    if provider is None:
        raise ConfigError("a rate limit needs a provider name to share it by (provider=...)")
    return limiter_actor(provider, limit)


def _report(on_results: OnResults | None, offset: int, answers: Sequence[Completion]) -> None:
    if on_results is not None and answers:
        on_results([(offset + i, answer) for i, answer in enumerate(answers)])
