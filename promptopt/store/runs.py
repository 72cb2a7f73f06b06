"""The store's methods on runs: create, read, list, finish, and the owner and heartbeat
that let one process at a time run a run (resume)."""

from __future__ import annotations

import secrets
from typing import Any

import sqlalchemy as sa

from promptopt.errors import StoreError
from promptopt.store.base import StoreBase
from promptopt.store.common import (
    _RUN_ID_RE,
    RUN_STATUSES,
    RunRecord,
    _dump_json,
    _now,
    _promptopt_version,
    _run_record,
    scrub_secrets,
)
from promptopt.store.schema import RUNS


class RunMethods(StoreBase):
    """Runs: :meth:`create_run` … :meth:`heartbeat`."""

    def create_run(
        self,
        *,
        kind: str,
        task: str,
        model: str,
        config: dict[str, Any],
        seed: int | None = None,
        dataset_hash: str | None = None,
        run_id: str | None = None,
        owner: str | None = None,
    ) -> str:
        """Record a new run with status ``running`` and return its id (12 hex characters
        unless ``run_id`` is given). Secret-looking keys in ``config`` are stored as
        ``***``. A ``run_id`` that already exists raises StoreError."""
        if not kind:
            raise StoreError("a run needs a kind, e.g. 'eval' or 'search'")
        if run_id is not None and not _RUN_ID_RE.match(run_id):
            raise StoreError(
                f"invalid run id {run_id!r}",
                hint="use 1-64 letters, digits, '.', '_' or '-', starting with a letter or digit",
            )
        if seed is not None and not -(2**63) <= seed < 2**63:  # a BIGINT column
            raise StoreError(f"seed {seed} is out of range", hint="use a seed from 0 to 4294967295")
        config_json = _dump_json(scrub_secrets(config), "run config")
        row = {
            "kind": kind,
            "task": task,
            "model": model,
            "status": "running",
            "config": config_json,
            "seed": seed,
            "dataset_hash": dataset_hash,
            "promptopt_version": _promptopt_version(),
            "created_at": _now(),
            "finished_at": None,
            "summary": None,
            "owner": owner,
            "heartbeat_at": _now() if owner else None,
        }
        runs = RUNS
        for _attempt in range(5):
            new_id = run_id or secrets.token_hex(6)
            with self._transaction(write=True) as conn:
                exists = conn.execute(sa.select(runs.c.id).where(runs.c.id == new_id)).first()
                if exists is None:
                    conn.execute(runs.insert(), {**row, "id": new_id})
                    return new_id
            if run_id is not None:
                raise StoreError(f"run {run_id!r} already exists in {self.display_url!r}")
        raise StoreError("could not allocate a fresh run id")  # pragma: no cover - 2^48 ids

    def get_run(self, run_id: str) -> RunRecord:
        """The run with this id; StoreError (with "did you mean") if there is none."""
        runs = RUNS
        with self._transaction() as conn:
            row = conn.execute(sa.select(runs).where(runs.c.id == run_id)).mappings().first()
            if row is None:
                raise self._unknown("run", run_id, conn, runs.c.id, runs.c.created_at)
        return _run_record(row)

    def list_runs(self, limit: int = 50) -> list[RunRecord]:
        """The most recent runs first."""
        runs = RUNS
        query = sa.select(runs).order_by(runs.c.created_at.desc(), runs.c.id.desc()).limit(limit)
        with self._transaction() as conn:
            return [_run_record(row) for row in conn.execute(query).mappings()]

    def finish_run(self, run_id: str, status: str, summary: dict[str, Any] | None = None) -> None:
        """Set the run's final status (finished, failed or interrupted), its end time
        and, if given, its summary."""
        if status not in RUN_STATUSES:
            raise StoreError(f"unknown run status {status!r}; expected one of {', '.join(RUN_STATUSES)}")
        values: dict[str, Any] = {
            "status": status,
            "finished_at": None if status == "running" else _now(),
        }
        if summary is not None:
            values["summary"] = _dump_json(scrub_secrets(summary), "run summary")
        runs = RUNS
        with self._transaction(write=True) as conn:
            updated = conn.execute(runs.update().where(runs.c.id == run_id).values(**values)).rowcount
            if not updated:
                raise self._unknown("run", run_id, conn, runs.c.id, runs.c.created_at)

    def take_run(self, run_id: str, owner: str, *, expected_owner: str | None) -> bool:
        """Make ``owner`` the run's owner (status ``running``, fresh heartbeat) if its
        owner is still ``expected_owner`` — a compare-and-set, so of two processes taking
        the same run at once only one succeeds. Returns whether this one did."""
        runs = RUNS
        same = runs.c.owner.is_(None) if expected_owner is None else runs.c.owner == expected_owner
        values = {"owner": owner, "heartbeat_at": _now(), "status": "running", "finished_at": None}
        with self._transaction(write=True) as conn:
            return bool(
                conn.execute(runs.update().where(runs.c.id == run_id, same).values(**values)).rowcount
            )

    def heartbeat(self, run_id: str, owner: str) -> bool:
        """Record that ``owner`` is alive and still runs ``run_id``; False when another
        process has taken the run over."""
        runs = RUNS
        with self._transaction(write=True) as conn:
            query = (
                runs.update().where(runs.c.id == run_id, runs.c.owner == owner).values(heartbeat_at=_now())
            )
            return bool(conn.execute(query).rowcount)
