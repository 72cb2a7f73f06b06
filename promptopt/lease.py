"""Who runs a run: an owner and a heartbeat in the store.

A search (or an eval) records its owner, ``host:pid:token``, when it creates its run and
updates ``heartbeat_at`` every :data:`HEARTBEAT_S` seconds while it works. A run whose
status is ``running`` is *alive* while its heartbeat is fresher than :data:`STALE_S`
and, on this host, its process exists; otherwise it is *stale* (killed, or its machine
lost): ``promptopt runs`` says so and a resume takes it over. Resuming a live run is
refused unless ``take_over`` is asked for; the process that loses a run stops at its next
heartbeat instead of making the same model calls twice.
"""

from __future__ import annotations

import os
import secrets
import socket
import threading
from datetime import datetime, timezone
from types import TracebackType
from typing import Any

from promptopt.errors import ConfigError, StoreError

HEARTBEAT_ENV = "PROMPTOPT_HEARTBEAT_S"


def heartbeat_s() -> float:
    """Seconds between heartbeats ($PROMPTOPT_HEARTBEAT_S, default 10)."""
    try:
        return max(0.05, float(os.environ.get(HEARTBEAT_ENV, "10")))
    except ValueError:
        return 10.0


def stale_s() -> float:
    """A heartbeat older than this means the owner is gone (six missed beats)."""
    return 6 * heartbeat_s()


def new_owner() -> str:
    return f"{socket.gethostname()}:{os.getpid()}:{secrets.token_hex(4)}"


def _pid_exists(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:  # another user's process: it exists
        return True
    try:  # a killed child its parent has not waited for yet is a zombie: gone
        with open(f"/proc/{pid}/stat", encoding="ascii", errors="replace") as handle:
            return handle.read().rpartition(")")[2].split()[:1] != ["Z"]
    except OSError:
        return True


def heartbeat_age(run: Any, now: datetime | None = None) -> float | None:
    if run.heartbeat_at is None:
        return None
    return ((now or datetime.now(timezone.utc)) - run.heartbeat_at).total_seconds()


def owner_alive(run: Any, now: datetime | None = None) -> bool:
    """Whether the process that owns ``run`` (a RunRecord) is still running it."""
    if run.status != "running" or not run.owner:
        return False
    age = heartbeat_age(run, now)
    if age is None or age > stale_s():
        return False
    parts = run.owner.split(":")
    if len(parts) >= 3 and ":".join(parts[:-2]) == socket.gethostname() and parts[-2].isdigit():
        return _pid_exists(int(parts[-2]))  # on this host a killed owner is known at once
    return True


def describe_owner(run: Any) -> str:
    parts = (run.owner or "").split(":")
    who = f"pid {parts[-2]} on {':'.join(parts[:-2])}" if len(parts) >= 3 else "another process"
    age = heartbeat_age(run)
    return who + (f", last heartbeat {age:.0f} s ago" if age is not None else "")


def take(store: Any, run: Any, owner: str, *, take_over: bool = False) -> None:
    """Make ``owner`` the owner of ``run`` for a resume, or refuse: ConfigError when its
    owner is alive (unless ``take_over``), StoreError when another process took it first."""
    if owner_alive(run) and not take_over:
        raise ConfigError(
            f"run {run.id} is still running ({describe_owner(run)}); resuming it now would make "
            "the same model calls twice",
            hint="wait for it to finish or stop it; if it is really gone, add --take-over "
            "(the other process stops at its next heartbeat)",
        )
    if not store.take_run(run.id, owner, expected_owner=run.owner):
        raise StoreError(f"run {run.id} was just taken over by another process", hint="see `promptopt runs`")


class Heartbeat:
    """A daemon thread that keeps ``owner``'s heartbeat on ``run_id`` fresh; ``lost`` is
    set when another process has taken the run over."""

    def __init__(self, store: Any, run_id: str, owner: str) -> None:
        self.store, self.run_id, self.owner = store, run_id, owner
        self.lost = threading.Event()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._beat, name=f"promptopt-heartbeat-{run_id}", daemon=True)

    def _beat(self) -> None:
        interval = heartbeat_s()
        while not self._stop.wait(interval):
            try:
                if not self.store.heartbeat(self.run_id, self.owner):
                    self.lost.set()
                    return
            except StoreError:  # a busy database: try again at the next beat
                continue

    def check(self) -> None:
        """Raise StoreError if the run has been taken over by another process."""
        if self.lost.is_set():
            raise StoreError(
                f"run {self.run_id} was taken over by another process; stopping here",
                hint="see `promptopt runs`",
            )

    def __enter__(self) -> Heartbeat:
        self._thread.start()
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self._stop.set()
        self._thread.join(timeout=5)
