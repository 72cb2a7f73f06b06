"""The part of :class:`~promptopt.store.Store` every group of its methods uses: the
engine, one transaction at a time, and the "did you mean" error for an unknown id."""

from __future__ import annotations

import contextlib
import difflib
from collections.abc import Iterator
from datetime import datetime

import sqlalchemy as sa
from sqlalchemy import exc
from sqlalchemy.engine import Connection, Engine

from promptopt.errors import StoreError
from promptopt.store.common import _database_error, mask_url


class StoreBase:
    """The engine and the transaction helper the store's method groups share."""

    url: str
    _engine: Engine

    @property
    def display_url(self) -> str:
        """The URL with its password replaced by ``***``."""
        return mask_url(self.url)

    @property
    def engine(self) -> Engine:
        """The SQLAlchemy engine, for read-only reporting queries (leaderboards)."""
        return self._engine

    def _error(self, action: str, error: BaseException, hint: str | None = None) -> StoreError:
        """A StoreError for a database failure, with any password scrubbed out."""
        return _database_error(self.url, action, error, hint)

    @contextlib.contextmanager
    def _transaction(self, write: bool = False) -> Iterator[Connection]:
        """One connection in one transaction; write transactions take SQLite's write
        lock up front (BEGIN IMMEDIATE) so that they wait for, rather than fail on,
        a concurrent writer."""
        try:
            with self._engine.connect() as conn:
                if write:
                    conn.execution_options(promptopt_write=True)
                with conn.begin():
                    yield conn
        except exc.IntegrityError as e:
            raise self._error("write to", e) from e
        except exc.DBAPIError as e:
            raise self._error("use", e) from e

    def close(self) -> None:
        """Release every connection. The store cannot be used afterwards."""
        self._engine.dispose()

    def _unknown(
        self,
        what: str,
        value: str,
        conn: Connection,
        column: sa.ColumnElement[str],
        recency: sa.ColumnElement[datetime] | None = None,
    ) -> StoreError:
        """StoreError for an unknown id, suggesting ids that start with ``value`` or
        look like it."""
        escaped = value.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
        prefixed = list(
            conn.execute(
                sa.select(column).where(column.like(escaped + "%", escape="\\")).order_by(column).limit(5)
            ).scalars()
        )
        suggestions = prefixed
        if not suggestions:
            recent = sa.select(column)
            if recency is not None:
                recent = recent.order_by(recency.desc())
            pool = list(conn.execute(recent.limit(2000)).scalars())
            suggestions = difflib.get_close_matches(value, pool, n=3, cutoff=0.6)
        hint = f"did you mean {' or '.join(repr(s) for s in suggestions)}?" if suggestions else None
        return StoreError(f"no {what} {value!r} in {self.display_url!r}", hint=hint)
