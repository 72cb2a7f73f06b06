"""The SQL store: runs, candidates, evaluations with their samples, and the response cache.

One :class:`Store` wraps one SQLAlchemy engine; there are no module-level engines or
other globals. Any SQLAlchemy URL works; SQLite (the default, in WAL mode) and
PostgreSQL are tested. The schema is versioned with alembic revisions shipped in the
package (``promptopt/store/migrations``); a database at another revision is refused
with :class:`~promptopt.errors.SchemaVersionError` and ``promptopt db upgrade``
(:meth:`Store.upgrade`) brings an older one up to date.
"""

from __future__ import annotations

import contextlib
import dataclasses
import difflib
import json
import math
import os
import re
import secrets
import sqlite3
import time
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from sqlalchemy import event, exc
from sqlalchemy.engine import Connection, Engine

from promptopt.errors import SchemaVersionError, StoreError
from promptopt.store.schema import (
    CACHE,
    CANDIDATES,
    EVALUATIONS,
    EXAMPLE_ID_LENGTH,
    ID_LENGTH,
    RUN_CANDIDATES,
    RUNS,
    SAMPLES,
    SPLIT_LENGTH,
    TABLE_PREFIX,
    VERSION_TABLE,
)
from promptopt.types import Candidate, Completion, EvalResult, SampleResult, canonical_json

DEFAULT_URL = "sqlite:///promptopt.db"
ENV_VAR = "PROMPTOPT_DB"
#: Directory holding ``env.py``, ``script.py.mako`` and ``versions/``; found next to this
#: module so that migrations work from an installed wheel as well as from a checkout.
MIGRATIONS_DIR = Path(__file__).resolve().with_name("migrations")

RUN_STATUSES = ("running", "finished", "failed", "interrupted")
SQLITE_BUSY_TIMEOUT_MS = 30_000
# Rows per statement when reading by a list of keys: well under SQLite's bound-parameter
# limit and PostgreSQL's 65535.
_IN_CHUNK = 500
# Rows per executemany when inserting.
_INSERT_CHUNK = 5_000
# Arbitrary constant naming the PostgreSQL advisory lock that serialises migrations.
_PG_MIGRATION_LOCK = 0x70726F6D  # "prom"

_RUN_ID_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")
_SECRET_KEY_PARTS = ("apikey", "password", "passwd", "secret", "authorization")
_URL_PASSWORD_RE = re.compile(r"(?P<head>[A-Za-z][A-Za-z0-9+.\-]*://[^:/@\s]*:)(?P<pw>[^@\s]+)(?P<tail>@)")
MASK = "***"


@dataclass(frozen=True)
class RunRecord:
    """A run as stored. ``config`` and ``summary`` are the decoded JSON documents;
    timestamps are timezone-aware UTC."""

    id: str
    kind: str
    task: str
    model: str
    status: str
    config: dict[str, Any]
    seed: int | None
    dataset_hash: str | None
    promptopt_version: str
    created_at: datetime
    finished_at: datetime | None
    summary: dict[str, Any] | None
    owner: str | None = None  # "host:pid:token" of the process running it
    heartbeat_at: datetime | None = None  # when that process last said it is alive


# --------------------------------------------------------------------------- helpers


def resolve_url(url: str | None = None) -> str:
    """The database URL to use: ``url`` > ``$PROMPTOPT_DB`` > ``sqlite:///promptopt.db``."""
    if url:
        return url
    return os.environ.get(ENV_VAR) or DEFAULT_URL


def _sqlalchemy_url(url: str) -> str:
    """A bare filesystem path (no ``://``) means a SQLite file at that path."""
    if "://" in url:
        return url
    return "sqlite:///" + os.path.expanduser(url)


def mask_url(url: str) -> str:
    """``url`` with any password replaced by ``***``; safe to print or log."""
    return _URL_PASSWORD_RE.sub(lambda m: m["head"] + MASK + m["tail"], url)


def url_without_password(url: str) -> tuple[str, bool]:
    """``url`` with its password left out (not masked: the result works once the password
    comes from elsewhere, e.g. PGPASSWORD), and whether there was one."""
    if _url_password(url) is None:
        return url, False
    try:
        parsed = sa.engine.make_url(_sqlalchemy_url(url))
        bare = sa.engine.URL.create(
            parsed.drivername, parsed.username, None, parsed.host, parsed.port, parsed.database, parsed.query
        )
        return bare.render_as_string(hide_password=False), True
    except Exception:
        return mask_url(url), True


def _url_password(url: str) -> str | None:
    try:
        return sa.engine.make_url(_sqlalchemy_url(url)).password
    except Exception:
        return None


def _is_secret_key(key: Any) -> bool:
    normalised = re.sub(r"[^a-z0-9]", "", str(key).lower())
    if normalised.endswith("env"):  # api_key_env: the *name* of a variable, which a resume needs
        return False
    return any(part in normalised for part in _SECRET_KEY_PARTS)


def scrub_secrets(value: Any) -> Any:
    """Replace the value of every secret-looking key (api_key, password, secret,
    authorization; case-insensitive, at any depth) with ``***``, and passwords inside
    URL-like strings too. Returns a new structure; the input is not modified."""
    if isinstance(value, Mapping):
        return {
            k: (MASK if _is_secret_key(k) and v is not None else scrub_secrets(v)) for k, v in value.items()
        }
    if isinstance(value, (list, tuple)):
        return [scrub_secrets(v) for v in value]
    if isinstance(value, str) and "://" in value:
        return mask_url(value)
    return value


def _json_default(value: Any) -> Any:
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        to_dict = getattr(value, "to_dict", None)
        return to_dict() if callable(to_dict) else dataclasses.asdict(value)
    if isinstance(value, (set, frozenset)):
        return sorted(value, key=repr)
    if isinstance(value, (Path, datetime)):
        return str(value)
    raise TypeError(f"{type(value).__name__} is not JSON serialisable")


def _dump_json(value: Any, what: str) -> str:
    try:
        return json.dumps(value, sort_keys=True, ensure_ascii=False, default=_json_default)
    except (TypeError, ValueError) as e:
        raise StoreError(f"cannot store the {what} as JSON: {e}") from e


def _now() -> datetime:
    return datetime.now(timezone.utc)


def _as_utc(value: datetime | None) -> datetime | None:
    if value is None:
        return None
    if value.tzinfo is None:  # SQLite drops the offset; everything is written in UTC
        return value.replace(tzinfo=timezone.utc)
    return value.astimezone(timezone.utc)


def _text(value: str | None) -> str | None:
    # PostgreSQL text cannot hold NUL characters; model output occasionally does. The
    # same replacement on every dialect keeps SQLite and PostgreSQL results identical.
    if value is None or "\x00" not in value:
        return value
    return value.replace("\x00", "\ufffd")


def _check_key(result: EvalResult) -> None:
    """Identifiers are stored as given (never rewritten, so that resuming finds them);
    the same limits apply on every dialect."""
    for name, value, limit in (
        ("candidate hash", result.candidate_hash, ID_LENGTH),
        ("split", result.split, SPLIT_LENGTH),
        ("example id", result.example_id, EXAMPLE_ID_LENGTH),
    ):
        if not isinstance(value, str) or not value or len(value) > limit or "\x00" in value:
            raise StoreError(
                f"cannot store the evaluation of example {result.example_id!r}: its {name} {value!r} "
                f"must be a non-empty string of at most {limit} characters without NUL"
            )


def _score(value: float | None) -> float | None:
    # NaN would poison AVG() in leaderboard queries; it means "no score".
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return None
    return float(value)


def _chunks(items: Sequence[Any], size: int) -> Iterator[Sequence[Any]]:
    for start in range(0, len(items), size):
        yield items[start : start + size]


def _promptopt_version() -> str:
    try:
        import promptopt

        version = getattr(promptopt, "__version__", None)
        if isinstance(version, str):
            return version
    except ImportError:  # pragma: no cover - we are inside promptopt
        pass
    try:
        from importlib.metadata import version as dist_version

        return dist_version("promptopt")
    except Exception:
        return "unknown"


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


class Store:
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

    @property
    def display_url(self) -> str:
        """The URL with its password replaced by ``***``."""
        return mask_url(self.url)

    @property
    def engine(self) -> Engine:
        """The SQLAlchemy engine, for read-only reporting queries (leaderboards)."""
        return self._engine

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

    # ---------------------------------------------------------------- runs

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

    # ---------------------------------------------------------------- candidates

    def add_candidate(
        self, run_id: str, candidate: Candidate, origin: str = "user", parent: str | None = None
    ) -> str:
        """Store ``candidate`` (once, shared by all runs) and link it to ``run_id``.
        Idempotent: adding it again keeps the first origin and parent. ``parent`` is
        the hash of an already stored candidate. Returns the candidate's hash."""
        candidate_hash = candidate.hash
        candidates = CANDIDATES
        links = RUN_CANDIDATES
        runs = RUNS
        now = _now()
        with self._transaction(write=True) as conn:
            if conn.execute(sa.select(runs.c.id).where(runs.c.id == run_id)).first() is None:
                raise self._unknown("run", run_id, conn, runs.c.id, runs.c.created_at)
            if parent is not None and parent != candidate_hash:
                found = conn.execute(sa.select(candidates.c.hash).where(candidates.c.hash == parent)).first()
                if found is None:
                    raise self._unknown("parent candidate", parent, conn, candidates.c.hash)
            _insert_ignore(
                conn,
                candidates,
                [{"hash": candidate_hash, "spec": canonical_json(candidate.to_dict()), "created_at": now}],
                ["hash"],
            )
            _insert_ignore(
                conn,
                links,
                [
                    {
                        "run_id": run_id,
                        "candidate_hash": candidate_hash,
                        "origin": origin,
                        "parent_hash": parent,
                        "created_at": now,
                    }
                ],
                ["run_id", "candidate_hash"],
            )
        return candidate_hash

    def get_candidate(self, candidate_hash: str) -> Candidate:
        """The candidate with this hash; StoreError (with "did you mean") if unknown."""
        candidates = CANDIDATES
        with self._transaction() as conn:
            spec = conn.execute(
                sa.select(candidates.c.spec).where(candidates.c.hash == candidate_hash)
            ).scalar_one_or_none()
            if spec is None:
                raise self._unknown(
                    "candidate", candidate_hash, conn, candidates.c.hash, candidates.c.created_at
                )
        return Candidate.from_dict(json.loads(spec))

    # ---------------------------------------------------------------- evaluations

    def record_evaluations(self, run_id: str, results: Sequence[EvalResult]) -> int:
        """Insert ``results`` (with their samples) in one transaction and return how many
        were new. A result whose (run, candidate, split, example) is already stored is
        skipped, so re-recording a batch after a crash or retry is harmless. Every
        candidate must have been added to the run with :meth:`add_candidate`."""
        if not results:
            return 0
        for result in results:
            _check_key(result)
        # First occurrence wins within the batch, as it does against stored rows.
        unique: dict[tuple[str, str, str], EvalResult] = {}
        for result in results:
            unique.setdefault((result.candidate_hash, result.split, result.example_id), result)
        now = _now()
        rows = [
            {
                "run_id": run_id,
                "candidate_hash": r.candidate_hash,
                "split": r.split,
                "example_id": r.example_id,
                "answer": _text(r.answer),
                "gold": _text(r.gold) or "",
                "score": _score(r.score),
                "error": _text(r.error),
                "tokens_in": r.tokens_in,
                "tokens_out": r.tokens_out,
                "latency_s": float(r.latency_s),
                "created_at": now,
                "truncated": r.truncated,
                "feedback": _text(r.feedback) or None,
            }
            for r in unique.values()
        ]
        evaluations = EVALUATIONS
        with self._transaction(write=True) as conn:
            self._check_run_candidates(conn, run_id, {key[0] for key in unique})
            ids: dict[tuple[str, str, str], int] = {}
            for chunk in _chunks(rows, _INSERT_CHUNK):
                for row in _insert_ignore(
                    conn,
                    evaluations,
                    chunk,
                    ["run_id", "candidate_hash", "split", "example_id"],
                    returning=[
                        evaluations.c.id,
                        evaluations.c.candidate_hash,
                        evaluations.c.split,
                        evaluations.c.example_id,
                    ],
                ):
                    ids[(row.candidate_hash, row.split, row.example_id)] = row.id
            sample_rows = [
                {
                    "evaluation_id": evaluation_id,
                    "sample_index": s.sample_index,
                    "raw_output": _text(s.raw_output) or "",
                    "parsed_answer": _text(s.parsed_answer),
                    "score": _score(s.score),
                    "tokens_in": s.tokens_in,
                    "tokens_out": s.tokens_out,
                    "latency_s": float(s.latency_s),
                    "cached": bool(s.cached),
                    "error": _text(s.error),
                    "finish_reason": _text(s.finish_reason),
                }
                for key, evaluation_id in ids.items()
                for s in {s.sample_index: s for s in reversed(unique[key].samples)}.values()
            ]
            samples = SAMPLES
            for chunk in _chunks(sample_rows, _INSERT_CHUNK):
                _insert_ignore(conn, samples, chunk, ["evaluation_id", "sample_index"])
        return len(ids)

    def _check_run_candidates(self, conn: Connection, run_id: str, hashes: set[str]) -> None:
        links = RUN_CANDIDATES
        runs = RUNS
        if conn.execute(sa.select(runs.c.id).where(runs.c.id == run_id)).first() is None:
            raise self._unknown("run", run_id, conn, runs.c.id, runs.c.created_at)
        known: set[str] = set()
        ordered = sorted(hashes)
        for chunk in _chunks(ordered, _IN_CHUNK):
            known.update(
                conn.execute(
                    sa.select(links.c.candidate_hash).where(
                        links.c.run_id == run_id, links.c.candidate_hash.in_(chunk)
                    )
                ).scalars()
            )
        missing = [h for h in ordered if h not in known]
        if missing:
            raise StoreError(
                f"candidate(s) {', '.join(missing)} are not part of run {run_id!r}",
                hint="call Store.add_candidate(run_id, candidate) before recording its evaluations",
            )

    def get_evaluations(
        self, run_id: str, candidate_hash: str | None = None, split: str | None = None
    ) -> list[EvalResult]:
        """The run's evaluations (optionally of one candidate and/or split) with their
        samples, in the order they were recorded."""
        evaluations = EVALUATIONS
        samples = SAMPLES
        conditions = [evaluations.c.run_id == run_id]
        if candidate_hash is not None:
            conditions.append(evaluations.c.candidate_hash == candidate_hash)
        if split is not None:
            conditions.append(evaluations.c.split == split)
        with self._transaction() as conn:
            eval_rows = conn.execute(
                sa.select(evaluations).where(*conditions).order_by(evaluations.c.id)
            ).all()
            sample_query = (
                sa.select(samples)
                .join(evaluations, samples.c.evaluation_id == evaluations.c.id)
                .where(*conditions)
                .order_by(samples.c.evaluation_id, samples.c.sample_index)
            )
            by_evaluation: dict[int, list[SampleResult]] = {}
            for s in conn.execute(sample_query):
                by_evaluation.setdefault(s.evaluation_id, []).append(
                    SampleResult(
                        sample_index=s.sample_index,
                        raw_output=s.raw_output,
                        parsed_answer=s.parsed_answer,
                        score=s.score,
                        tokens_in=s.tokens_in,
                        tokens_out=s.tokens_out,
                        latency_s=s.latency_s,
                        cached=bool(s.cached),
                        error=s.error,
                        finish_reason=s.finish_reason or "stop",
                    )
                )
        return [
            EvalResult(
                candidate_hash=e.candidate_hash,
                example_id=e.example_id,
                split=e.split,
                answer=e.answer,
                gold=e.gold,
                score=e.score,
                samples=tuple(by_evaluation.get(e.id, ())),
                error=e.error,
                feedback=e.feedback,
            )
            for e in eval_rows
        ]

    def evaluated_example_ids(self, run_id: str, candidate_hash: str, split: str) -> set[str]:
        """Ids of the examples already recorded for this run, candidate and split
        (failed ones included): what a resumed run can skip."""
        evaluations = EVALUATIONS
        query = sa.select(evaluations.c.example_id).where(
            evaluations.c.run_id == run_id,
            evaluations.c.candidate_hash == candidate_hash,
            evaluations.c.split == split,
        )
        with self._transaction() as conn:
            return set(conn.execute(query).scalars())

    # ---------------------------------------------------------------- response cache

    def cache_get_many(self, keys: Sequence[str]) -> dict[str, Completion]:
        """Cached completions for those of ``keys`` that are stored, marked
        ``cached=True`` with ``latency_s=0``."""
        cache = CACHE
        found: dict[str, Completion] = {}
        wanted = list(dict.fromkeys(keys))
        if not wanted:
            return found
        with self._transaction() as conn:
            for chunk in _chunks(wanted, _IN_CHUNK):
                query = sa.select(cache.c.key, cache.c.response).where(cache.c.key.in_(chunk))
                for key, response in conn.execute(query):
                    data = json.loads(response)
                    found[key] = Completion(
                        text=data["text"],
                        tokens_in=int(data.get("tokens_in", 0)),
                        tokens_out=int(data.get("tokens_out", 0)),
                        finish_reason=data.get("finish_reason", "stop"),
                        latency_s=0.0,
                        cached=True,
                    )
        return found

    def cache_put_many(self, entries: Sequence[tuple[str, str, Completion]]) -> None:
        """Store ``(key, model, completion)`` entries in one transaction. Failed
        completions are not cached; a key already stored keeps its first response."""
        now = _now()
        rows: dict[str, dict[str, Any]] = {}
        for key, model, completion in entries:
            if not completion.ok or key in rows:
                continue
            response = {
                "text": completion.text,
                "tokens_in": completion.tokens_in,
                "tokens_out": completion.tokens_out,
                "finish_reason": completion.finish_reason,
            }
            rows[key] = {"key": key, "model": model, "response": canonical_json(response), "created_at": now}
        if not rows:
            return
        cache = CACHE
        with self._transaction(write=True) as conn:
            for chunk in _chunks(list(rows.values()), _INSERT_CHUNK):
                _insert_ignore(conn, cache, chunk, ["key"])

    # ---------------------------------------------------------------- errors

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
        write = conn.get_execution_options().get("promptopt_write", False)
        conn.exec_driver_sql("BEGIN IMMEDIATE" if write else "BEGIN")


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


def _insert_ignore(
    conn: Connection,
    table: sa.Table,
    rows: Sequence[dict[str, Any]],
    key_columns: Sequence[str],
    returning: Sequence[sa.ColumnElement[Any]] | None = None,
) -> list[Any]:
    """INSERT ``rows``, skipping those whose ``key_columns`` already exist, in one
    executemany. Returns the ``returning`` columns of the rows actually inserted."""
    if not rows:
        return []
    rows = list(rows)
    dialect = conn.dialect.name
    if dialect == "postgresql":
        return _pg_insert_ignore(conn, table, rows, key_columns, returning)
    if dialect == "sqlite":
        from sqlalchemy.dialects.sqlite import insert as sqlite_insert

        stmt = sqlite_insert(table).on_conflict_do_nothing(index_elements=list(key_columns))
        if returning:
            return list(conn.execute(stmt.returning(*returning), rows))
        conn.execute(stmt, rows)
        return []
    # Other dialects: check, then insert what is missing. Safe against our own
    # retries; concurrent writers of the same keys would hit the unique constraint.
    key_cols = [table.c[name] for name in key_columns]
    existing: set[tuple[Any, ...]] = set()
    for chunk in _chunks(rows, _IN_CHUNK):
        condition = sa.or_(*(sa.and_(*(c == row[c.name] for c in key_cols)) for row in chunk))
        existing.update(tuple(r) for r in conn.execute(sa.select(*key_cols).where(condition)))
    fresh = [row for row in rows if tuple(row[name] for name in key_columns) not in existing]
    if not fresh:
        return []
    if returning:
        if conn.dialect.insert_executemany_returning:
            return list(conn.execute(table.insert().returning(*returning), fresh))
        inserted: list[Any] = []
        for row in fresh:
            inserted.extend(conn.execute(table.insert().returning(*returning), row))
        return inserted
    conn.execute(table.insert(), fresh)
    return []


def _pg_insert_ignore(
    conn: Connection,
    table: sa.Table,
    rows: Sequence[dict[str, Any]],
    key_columns: Sequence[str],
    returning: Sequence[sa.ColumnElement[Any]] | None,
) -> list[Any]:
    """PostgreSQL: ``INSERT ... SELECT * FROM unnest(<one array per column>) ON
    CONFLICT DO NOTHING [RETURNING ...]``. One statement with one parameter per column
    instead of a multi-row VALUES list with one parameter per cell: several times
    faster for big batches (the driver need not parse a megabyte of SQL), and RETURNING
    yields exactly the rows that were new."""
    preparer = conn.dialect.identifier_preparer
    names = list(rows[0])
    columns = [table.c[name] for name in names]
    arrays = ", ".join(
        f"CAST(:c{i} AS {column.type.compile(dialect=conn.dialect)}[])" for i, column in enumerate(columns)
    )
    sql = (
        f"INSERT INTO {preparer.format_table(table)} ({', '.join(preparer.quote(n) for n in names)}) "
        f"SELECT * FROM unnest({arrays}) "
        f"ON CONFLICT ({', '.join(preparer.quote(n) for n in key_columns)}) DO NOTHING"
    )
    if returning:
        sql += " RETURNING " + ", ".join(preparer.quote(c.name) for c in returning)
    params = {f"c{i}": [row[name] for row in rows] for i, name in enumerate(names)}
    result = conn.execute(sa.text(sql), params)
    return list(result) if returning else []


def _database_error(url: str, action: str, error: BaseException, hint: str | None = None) -> StoreError:
    """StoreError naming the database (password masked) and the driver's first line
    of explanation (SQLAlchemy's own text would add the statement and its parameters)."""
    detail = str(getattr(error, "orig", None) or error).strip().splitlines()
    text = detail[0] if detail else type(error).__name__
    password = _url_password(url)
    if password:
        text = text.replace(password, MASK)
    return StoreError(f"cannot {action} database {mask_url(url)!r}: {text}", hint=hint)


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


def _run_record(row: sa.RowMapping) -> RunRecord:
    created = _as_utc(row["created_at"])
    assert created is not None
    return RunRecord(
        id=row["id"],
        kind=row["kind"],
        task=row["task"],
        model=row["model"],
        status=row["status"],
        config=json.loads(row["config"]),
        seed=row["seed"],
        dataset_hash=row["dataset_hash"],
        promptopt_version=row["promptopt_version"],
        created_at=created,
        finished_at=_as_utc(row["finished_at"]),
        summary=json.loads(row["summary"]) if row["summary"] is not None else None,
        owner=row.get("owner"),
        heartbeat_at=_as_utc(row.get("heartbeat_at")),
    )


__all__ = ["RUN_STATUSES", "RunRecord", "Store", "head_revision", "mask_url", "resolve_url", "scrub_secrets"]
