"""The SQL store: runs, candidates, evaluations with their samples, and the response cache.

One :class:`Store` wraps one SQLAlchemy engine; there are no module-level engines or
other globals. Any SQLAlchemy URL works; SQLite (the default, in WAL mode) and
PostgreSQL are tested. The schema is versioned with alembic revisions shipped in the
package (``promptopt/store/migrations``); a database at another revision is refused
with :class:`~promptopt.errors.SchemaVersionError` and ``promptopt db upgrade``
(:meth:`Store.upgrade`) brings an older one up to date.
"""

from __future__ import annotations

import sqlite3
import time
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from sqlalchemy import event, exc
from sqlalchemy.engine import Connection, Engine

from promptopt.errors import SchemaVersionError, StoreError
from promptopt.store.cache import CacheMethods
from promptopt.store.common import (  # noqa: F401 - names this module has always offered
    _IN_CHUNK,
    _INSERT_CHUNK,
    DEFAULT_URL,
    ENV_VAR,
    MASK,
    RUN_STATUSES,
    SQLITE_BUSY_TIMEOUT_MS,
    RunRecord,
    _database_error,
    _promptopt_version,
    _sqlalchemy_url,
    mask_url,
    resolve_url,
    scrub_secrets,
    url_without_password,
)
from promptopt.store.evaluations import CandidateMethods, EvaluationMethods
from promptopt.store.runs import RunMethods
from promptopt.store.schema import TABLE_PREFIX, VERSION_TABLE

#: Directory holding ``env.py``, ``script.py.mako`` and ``versions/``; found next to this
#: module so that migrations work from an installed wheel as well as from a checkout.
MIGRATIONS_DIR = Path(__file__).resolve().with_name("migrations")

# Arbitrary constant naming the PostgreSQL advisory lock that serialises migrations.
_PG_MIGRATION_LOCK = 0x70726F6D  # "prom"


def _alembic_config(connection: Connection | None = None, url: str | None = None) -> Any:
    from alembic.config import Config

    config = Config()
    # ConfigParser interpolation: a '%' in the install path must be doubled.
    config.set_main_option("script_location", str(MIGRATIONS_DIR).replace("%", "%%"))
    if url is not None:
        config.set_main_option("sqlalchemy.url", url.replace("%", "%%"))
    if connection is not None:
        config.attributes["connection"] = connection
    return config


def _script_directory() -> Any:
    from alembic.script import ScriptDirectory

    return ScriptDirectory.from_config(_alembic_config())


def head_revision() -> str:
    """The schema revision this version of promptopt writes (the migrations' head)."""
    head = _script_directory().get_current_head()
    if head is None:  # pragma: no cover - the package ships its migrations
        raise StoreError(f"no schema migrations found in {MIGRATIONS_DIR}")
    return str(head)


def _current_revision(conn: Connection) -> str | None:
    from alembic.runtime.migration import MigrationContext

    context = MigrationContext.configure(conn, opts={"version_table": VERSION_TABLE})
    heads = context.get_current_heads()
    if not heads:
        return None
    return heads[0] if len(heads) == 1 else ",".join(sorted(heads))


# --------------------------------------------------------------------------- Store


class Store(RunMethods, CandidateMethods, EvaluationMethods, CacheMethods):
    """Runs, candidates, evaluations and the response cache in one SQL database.

    ``url`` is any SQLAlchemy URL, or a bare filesystem path meaning a SQLite file;
    when omitted, ``$PROMPTOPT_DB``, then ``sqlite:///promptopt.db`` (relative to the
    working directory). A new or empty database gets the schema at the head revision;
    tables of other applications (Optuna's, for instance) are left alone. A database
    at another revision raises :class:`SchemaVersionError`; one that cannot be opened
    raises :class:`StoreError` naming the URL with its password masked.

    Every write method is one transaction. Methods are safe to call from several
    processes on the same database; a ``Store`` object itself is meant for one thread
    at a time (open one per worker).
    """

    def __init__(self, url: str | None = None) -> None:
        self.url: str = resolve_url(url)
        self._engine = self._create_engine(self.url)
        try:
            self._check_schema()
        except BaseException:
            self._engine.dispose()
            raise

    # ---------------------------------------------------------------- connection

    @staticmethod
    def _create_engine(url: str) -> Engine:
        sa_url = _sqlalchemy_url(url)
        try:
            parsed = sa.engine.make_url(sa_url)
        except exc.ArgumentError as e:
            raise StoreError(
                f"cannot parse database URL {mask_url(url)!r}",
                hint="use an SQLAlchemy URL such as sqlite:///promptopt.db or "
                "postgresql+psycopg://user:password@host:5432/dbname, or a file path",
            ) from e
        is_sqlite = parsed.get_backend_name() == "sqlite"
        kwargs: dict[str, Any] = {}
        if is_sqlite:
            kwargs["connect_args"] = {"timeout": SQLITE_BUSY_TIMEOUT_MS / 1000}
        else:
            kwargs["pool_pre_ping"] = True
        try:
            engine = sa.create_engine(parsed, **kwargs)
        except (ImportError, exc.NoSuchModuleError) as e:
            hint = (
                "pip install 'promptopt[postgres]'"
                if parsed.get_backend_name() == "postgresql"
                else f"install the database driver for {parsed.drivername}"
            )
            raise StoreError(f"no database driver for {mask_url(url)!r}: {e}", hint=hint) from e
        except exc.ArgumentError as e:
            raise StoreError(f"cannot use database URL {mask_url(url)!r}: {e}") from e
        if is_sqlite:
            _configure_sqlite(engine)
        return engine

    def __enter__(self) -> Store:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"Store({self.display_url!r})"

    # ---------------------------------------------------------------- schema version

    def _check_schema(self) -> None:
        head = self.head_revision()
        try:
            with self._engine.connect() as conn:
                tables = set(sa.inspect(conn).get_table_names())
                current = _current_revision(conn) if VERSION_TABLE in tables else None
                conn.rollback()
        except exc.DBAPIError as e:
            raise self._error(
                "open",
                e,
                hint="check that the server is running and the URL, user and password are right"
                if "://" in self.url and not self.url.startswith("sqlite")
                else "check that the path names a promptopt SQLite database (or a new file) "
                "in an existing, writable directory",
            ) from e

        if current == head:
            return
        if current is None:
            ours = sorted(t for t in tables if t.startswith(TABLE_PREFIX) and t != VERSION_TABLE)
            if ours:
                raise StoreError(
                    f"database {self.display_url!r} has promptopt tables ({', '.join(ours)}) but no "
                    f"{VERSION_TABLE} table, so its schema version is unknown",
                    hint="point --db / PROMPTOPT_DB at a new database, or restore the "
                    f"{VERSION_TABLE} table from a backup",
                )
            self._upgrade_engine(self._engine, self.url)
            return
        raise _version_error(self.url, current, head)

    def head_revision(self) -> str:
        """The schema revision this version of promptopt writes."""
        return head_revision()

    def current_revision(self) -> str | None:
        """The schema revision recorded in the database (None if it has none)."""
        with self._transaction() as conn:
            return _current_revision(conn)

    @staticmethod
    def upgrade(url: str | None = None) -> tuple[str | None, str]:
        """Migrate the database at ``url`` (resolved like the constructor's) to the head
        revision, creating the schema if the database is new. Returns
        ``(from_revision, to_revision)``; they are equal when there was nothing to do."""
        resolved = resolve_url(url)
        engine = Store._create_engine(resolved)
        try:
            return Store._upgrade_engine(engine, resolved)
        finally:
            engine.dispose()

    @staticmethod
    def _upgrade_engine(engine: Engine, url: str) -> tuple[str | None, str]:
        from alembic import command
        from alembic.util.exc import CommandError

        head = head_revision()
        try:
            with engine.connect() as conn:
                conn.execution_options(promptopt_write=True)
                with conn.begin():
                    if conn.dialect.name == "postgresql":
                        # Two processes creating the same new database must not both run
                        # the DDL; the second waits, then finds the schema at head.
                        conn.execute(sa.select(sa.func.pg_advisory_xact_lock(_PG_MIGRATION_LOCK)))
                    before = _current_revision(conn)
                    if before is not None and not _is_known_revision(before):
                        raise _version_error(url, before, head)
                    if before != head:
                        command.upgrade(_alembic_config(conn), "head")
                    after = _current_revision(conn)
        except StoreError:
            raise
        except CommandError as e:
            raise StoreError(f"cannot migrate database {mask_url(url)!r}: {e}") from e
        except exc.DBAPIError as e:
            raise _database_error(url, "migrate", e) from e
        return before, after or head


# --------------------------------------------------------------------------- module internals


def _configure_sqlite(engine: Engine) -> None:
    """WAL journal, a generous busy timeout, enforced foreign keys, and real
    transactions: pysqlite's own transaction handling would commit DDL implicitly
    and start write transactions lazily, which makes concurrent writers fail with
    "database is locked" instead of waiting."""

    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_connection: Any, _record: Any) -> None:
        dbapi_connection.isolation_level = None  # we issue BEGIN ourselves
        cursor = dbapi_connection.cursor()
        try:
            cursor.execute(f"PRAGMA busy_timeout = {SQLITE_BUSY_TIMEOUT_MS}")
            cursor.execute("PRAGMA foreign_keys = ON")
            _enable_wal(cursor)
            cursor.execute("PRAGMA synchronous = NORMAL")  # durable enough in WAL mode
        finally:
            cursor.close()

    @event.listens_for(engine, "begin")
    def _on_begin(conn: Connection) -> None:
        # Straight to the driver: the same statement, without a whole SQLAlchemy
        # execution around it (one of the two in a small read transaction). Its
        # errors are wrapped as SQLAlchemy's own would be.
        statement = "BEGIN IMMEDIATE" if conn.get_execution_options().get("promptopt_write") else "BEGIN"
        try:
            conn.connection.driver_connection.execute(statement)  # type: ignore[union-attr]
        except sqlite3.Error as e:
            raise exc.DBAPIError.instance(statement, (), e, sqlite3.Error) from e


def _enable_wal(cursor: Any) -> None:
    """Switch the database to WAL. The switch needs an exclusive lock, and SQLite
    answers a competing opener with SQLITE_BUSY at once, without consulting the busy
    timeout (several processes opening a new database at the same moment hit this),
    so retry with a growing pause for as long as the busy timeout would have waited."""
    deadline = time.monotonic() + SQLITE_BUSY_TIMEOUT_MS / 1000
    pause = 0.005
    while True:
        try:
            cursor.execute("PRAGMA journal_mode = WAL")
            return
        except sqlite3.OperationalError as e:
            contended = "locked" in str(e) or "busy" in str(e)
            if not contended or time.monotonic() >= deadline:
                raise
        time.sleep(pause)
        pause = min(pause * 2, 0.2)


def _is_known_revision(revision: str) -> bool:
    script = _script_directory()
    try:
        return all(script.get_revision(rev) is not None for rev in revision.split(","))
    except Exception:
        return False


def _version_error(url: str, current: str, head: str) -> SchemaVersionError:
    shown = mask_url(url)
    if _is_known_revision(current):
        return SchemaVersionError(
            f"database {shown!r} is at schema revision {current}, older than this promptopt's {head}",
            hint=f"run `promptopt db upgrade --db {shown}` (back the database up first)",
        )
    return SchemaVersionError(
        f"database {shown!r} is at schema revision {current}, which this promptopt "
        f"({_promptopt_version()}, schema {head}) does not know; it was written by a newer promptopt",
        hint="upgrade promptopt (pip install -U promptopt) to use this database",
    )


__all__ = ["RUN_STATUSES", "RunRecord", "Store", "head_revision", "mask_url", "resolve_url", "scrub_secrets"]
