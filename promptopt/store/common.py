"""What every part of the store shares: the URL and secret helpers, the run record, the
row converters and the dialect-aware INSERT ... ON CONFLICT DO NOTHING.

Nothing here opens a database; :mod:`promptopt.store.store` does.
"""

from __future__ import annotations

import dataclasses
import functools
import json
import math
import os
import re
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from promptopt.errors import StoreError
from promptopt.store.schema import EXAMPLE_ID_LENGTH, ID_LENGTH, SPLIT_LENGTH
from promptopt.types import EvalResult

DEFAULT_URL = "sqlite:///promptopt.db"
ENV_VAR = "PROMPTOPT_DB"

RUN_STATUSES = ("running", "finished", "failed", "interrupted")
SQLITE_BUSY_TIMEOUT_MS = 30_000
# Rows per statement when reading by a list of keys: well under SQLite's bound-parameter
# limit and PostgreSQL's 65535.
_IN_CHUNK = 500
# Rows per executemany when inserting.
_INSERT_CHUNK = 5_000

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
        return _sqlite_insert_ignore(conn, table, rows, tuple(key_columns), returning)
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


def _sqlite_insert_ignore(
    conn: Connection,
    table: sa.Table,
    rows: Sequence[dict[str, Any]],
    key_columns: tuple[str, ...],
    returning: Sequence[sa.ColumnElement[Any]] | None,
) -> list[Any]:
    """SQLite's ``INSERT ... ON CONFLICT DO NOTHING [RETURNING ...]`` as the driver's SQL:
    the statement SQLAlchemy would send (one executemany; with RETURNING, pages of a
    multi-row VALUES list, as its "insertmanyvalues"), with the values its column types
    would bind, but without compiling and processing every row through the Core
    statement, which was most of a small batch's cost."""
    names = tuple(rows[0])
    processed = _sqlite_bind_processors(conn.dialect, table, names)
    values = [tuple(row[name] for name in names) for row in rows]
    if processed:
        for index, row in enumerate(values):
            cells = list(row)
            for position, process in processed:
                cells[position] = process(cells[position])
            values[index] = tuple(cells)
    returned = tuple(column.name for column in returning or ())
    if not returned:
        conn.exec_driver_sql(_sqlite_insert_sql(conn.dialect, table, names, key_columns, (), 1), values)
        return []
    dialect = conn.dialect
    page = max(
        1, min(dialect.insertmanyvalues_page_size, dialect.insertmanyvalues_max_parameters // len(names))
    )
    inserted: list[Any] = []
    for chunk in _chunks(values, page):
        sql = _sqlite_insert_sql(dialect, table, names, key_columns, returned, len(chunk))
        inserted.extend(conn.exec_driver_sql(sql, tuple(value for row in chunk for value in row)))
    return inserted


@functools.lru_cache(maxsize=64)
def _sqlite_bind_processors(dialect: Any, table: sa.Table, names: tuple[str, ...]) -> tuple[Any, ...]:
    """``(position, processor)`` of the columns whose values SQLite's types convert
    (timestamps, booleans); the others go as they are."""
    processors = (table.c[name].type.dialect_impl(dialect).bind_processor(dialect) for name in names)
    return tuple((position, process) for position, process in enumerate(processors) if process is not None)


@functools.lru_cache(maxsize=256)
def _sqlite_insert_sql(
    dialect: Any, table: sa.Table, names: tuple[str, ...], key_columns: tuple[str, ...],
    returning: tuple[str, ...], n_rows: int,
) -> str:  # fmt: skip
    """The text of an INSERT of ``n_rows`` rows that skips those whose keys exist."""
    preparer = dialect.identifier_preparer
    row = "(" + ", ".join("?" for _ in names) + ")"
    sql = (
        f"INSERT INTO {preparer.format_table(table)} ({', '.join(preparer.quote(n) for n in names)}) "
        f"VALUES {', '.join(row for _ in range(n_rows))} "
        f"ON CONFLICT ({', '.join(preparer.quote(n) for n in key_columns)}) DO NOTHING"
    )
    if returning:
        sql += " RETURNING " + ", ".join(preparer.quote(n) for n in returning)
    return sql


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
