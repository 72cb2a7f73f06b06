"""One session: the store it writes to, the runs it makes there, and the model stack.

Everything that runs a model against a task (a search, ``evaluate``, ``LoadedPrompt.run``,
an LLM judge, the benchmarks) needs the same three things, and they are built here once:

- :class:`Session` opens the store (or borrows one the caller opened, and then leaves it
  open) and starts runs on it; ``with Session(db) as session:`` closes what it opened.
- :class:`RunLifecycle` is one run's life: created (or, for a resume, its lease taken over),
  kept alive by a heartbeat while it works, and finished as ``finished``, ``interrupted``
  (Ctrl-C, or the world around it gone: :class:`~promptopt.errors.RunInterruptedError`)
  or ``failed``. Its ``run_id`` is known from the moment the run is stored, so a caller
  stopped by Ctrl-C can say which run to resume.
- :class:`ModelStack` wraps a backend as every run does: retries with backoff, then the
  response cache on the store, then the budget; with its counters (real model calls,
  cache hits, retries, faults met).

The search (:func:`promptopt.controller.prepare_search`) builds on these: prepare (config
resolved, task, metric and prices loaded, the plan estimated) → plan → run.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from types import TracebackType
from typing import Any

from promptopt.backends.base import Backend
from promptopt.backends.cache import CachingBackend
from promptopt.backends.retry import RetryingBackend
from promptopt.budget import Budget, BudgetedBackend, Spend
from promptopt.errors import RunInterruptedError
from promptopt.lease import Heartbeat, new_owner, take


class ModelStack:
    """``backend`` wrapped as a run uses it: retry → cache → budget.

    ``store`` None (or ``cache=False``) leaves the cache out; ``budget`` None leaves the
    budget out. :attr:`backend` is the outermost layer, the one to hand to an
    :class:`~promptopt.executor.Executor`. ``sleep`` is what a retry's backoff waits with
    (the Ray pool gives one that releases its driver lock)."""

    def __init__(
        self,
        backend: Backend,
        store: Any = None,
        *,
        budget: Budget | None = None,
        spend: Spend | None = None,
        max_attempts: int = 4,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self.model = backend
        self.retrying = RetryingBackend(backend, max_attempts=max_attempts, sleep=sleep)
        self.caching = CachingBackend(self.retrying, store) if store is not None else None
        below: Backend = self.caching or self.retrying
        self.budgeted = BudgetedBackend(below, budget, spend) if budget is not None else None
        self.backend: Backend = self.budgeted or below

    @property
    def spend(self) -> Spend | None:
        """What the budget layer has charged (None without a budget)."""
        return self.budgeted.spend if self.budgeted is not None else None

    @property
    def model_calls(self) -> int:
        """Requests that reached the model (cache hits excluded; each retry is one more)."""
        return self.retrying.sent

    @property
    def cache_hits(self) -> int:
        return self.caching.hits if self.caching is not None else 0

    @property
    def retries(self) -> int:
        return self.retrying.retries

    @property
    def faults_seen(self) -> int:
        """Failed requests met, each attempt counted."""
        return self.retrying.faults_seen


class RunLifecycle:
    """One run in the store, from created (or taken over) to finished. See the module."""

    def __init__(self, store: Any, run_id: str, owner: str) -> None:
        self.store = store
        self.run_id = run_id
        self.owner = owner
        self.heartbeat = Heartbeat(store, run_id, owner)

    @contextmanager
    def working(self, details: Callable[[], Mapping[str, Any]] = dict) -> Iterator[RunLifecycle]:
        """The run's work: the heartbeat beats meanwhile; if the work raises, the run is
        stored as ``interrupted`` or ``failed`` with the error and ``details()`` (unless
        another process has taken it over: it is then that process's), and the error goes on."""
        try:
            with self.heartbeat:
                yield self
        except BaseException as exc:
            status = "interrupted" if isinstance(exc, KeyboardInterrupt | RunInterruptedError) else "failed"
            if not self.heartbeat.lost.is_set():
                self.store.finish_run(
                    self.run_id, status, {"error": f"{type(exc).__name__}: {exc}"[:2000], **details()}
                )
            raise

    def finish(self, summary: Mapping[str, Any]) -> None:
        """Store the run as finished, with its summary."""
        self.store.finish_run(self.run_id, "finished", dict(summary))


class Session:
    """The store a program works on, and the runs it starts there.

    ``db`` is a :class:`~promptopt.store.Store` (borrowed: left open), a SQLAlchemy URL or
    SQLite path, or None (``$PROMPTOPT_DB``, else ``./promptopt.db``), opened here and
    closed by :meth:`close` (or the end of a ``with`` block). A ``Session`` given as ``db``
    to :func:`Session.of` is used as it is."""

    def __init__(self, db: Any = None) -> None:
        from promptopt.store import Store

        self.store = db if isinstance(db, Store) else Store(db)
        self._owns_store = not isinstance(db, Store)

    @classmethod
    def of(cls, db: Any) -> tuple[Session, bool]:
        """The session for ``db`` (a Session, a Store, a URL or None) and whether the caller
        opened it (and so closes it)."""
        if isinstance(db, Session):
            return db, False
        return cls(db), True

    def models(
        self,
        backend: Backend,
        *,
        cache: bool = True,
        budget: Budget | None = None,
        spend: Spend | None = None,
        max_attempts: int = 4,
        sleep: Callable[[float], None] = time.sleep,
    ) -> ModelStack:
        """``backend`` wrapped as a run uses it, its cache on this session's store."""
        return ModelStack(
            backend, self.store if cache else None, budget=budget, spend=spend, max_attempts=max_attempts,
            sleep=sleep,
        )  # fmt: skip

    def create_run(
        self,
        *,
        kind: str,
        task: str,
        model: str,
        config: Mapping[str, Any],
        seed: int | None = None,
        dataset_hash: str | None = None,
    ) -> RunLifecycle:
        """Store a new run, owned by this process."""
        owner = new_owner()
        run_id = self.store.create_run(
            kind=kind, task=task, model=model, config=dict(config), seed=seed, dataset_hash=dataset_hash, owner=owner
        )  # fmt: skip
        return RunLifecycle(self.store, run_id, owner)

    def resume_run(self, run_id: str, *, take_over: bool = False) -> RunLifecycle:
        """Take over a stored run to continue it (refused while its owner looks alive,
        unless ``take_over``; see :mod:`promptopt.lease`). The run is read afresh here: an
        owner's heartbeat read while the task loaded could look stale when it is not."""
        owner = new_owner()
        take(self.store, self.store.get_run(run_id), owner, take_over=take_over)
        return RunLifecycle(self.store, run_id, owner)

    def close(self) -> None:
        """Close the store if this session opened it."""
        if self._owns_store:
            self.store.close()

    def __enter__(self) -> Session:
        return self

    def __exit__(
        self, kind: type[BaseException] | None, error: BaseException | None, trace: TracebackType | None
    ) -> None:
        self.close()
