"""SQLAlchemy 2 declarative models of promptopt's tables.

Every table is prefixed ``po_`` and promptopt's alembic keeps its revision in its own
``po_alembic_version`` table, so the same database can also hold Optuna's RDB storage
(``studies``, ``trials``, ``version_info``, ``alembic_version``, ...) without either
side touching the other's tables.

These models describe the schema at the *head* revision. The migrations under
``promptopt/store/migrations/versions`` are the source of truth for how a database
gets there; a change here needs a new revision there (and ``tests/test_store.py``
checks that the two agree).

Conventions:

- JSON documents (run config and summary, candidate spec, cached response) are stored
  as canonical JSON *text*, not a dialect JSON type, so SQLite and PostgreSQL hold the
  same bytes and a candidate's spec hashes to its primary key.
- Timestamps are timezone-aware UTC (``TIMESTAMP WITH TIME ZONE`` on PostgreSQL; SQLite
  keeps them as ISO text without the offset and the store re-attaches UTC on read).
- ``po_evaluations.score`` is ``NULL`` for a failed evaluation: a failure is not a wrong
  answer, and leaderboards exclude it. Scores are floats in [0, 1] (partial credit);
  ``po_evaluations.feedback`` holds the metric's reason for the score.
"""

from __future__ import annotations

from datetime import datetime
from typing import cast

from sqlalchemy import (
    BigInteger,
    Boolean,
    DateTime,
    Float,
    ForeignKey,
    ForeignKeyConstraint,
    Integer,
    MetaData,
    String,
    Table,
    Text,
    UniqueConstraint,
    false,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

#: Name of the table where alembic records promptopt's schema revision.
VERSION_TABLE = "po_alembic_version"
#: Every promptopt table starts with this; other tables in the database are not ours.
TABLE_PREFIX = "po_"

# Explicit constraint names: migrations can then drop or alter them by name on every
# dialect (SQLite batch mode needs names too).
NAMING_CONVENTION = {
    "ix": "ix_%(table_name)s_%(column_0_N_name)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_N_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}

# 64-bit ids on servers; SQLite only auto-increments an INTEGER PRIMARY KEY (its rowid,
# which is 64-bit anyway).
BigIntId = BigInteger().with_variant(Integer(), "sqlite")

ID_LENGTH = 64  # run ids and candidate hashes
SPLIT_LENGTH = 64
EXAMPLE_ID_LENGTH = 255  # indexed, so bounded (MySQL cannot index unbounded TEXT)


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING_CONVENTION)


class Run(Base):
    """One ``promptopt eval`` or ``promptopt search`` invocation."""

    __tablename__ = "po_runs"

    id: Mapped[str] = mapped_column(String(ID_LENGTH), primary_key=True)
    kind: Mapped[str] = mapped_column(String(32))
    task: Mapped[str] = mapped_column(Text)
    model: Mapped[str] = mapped_column(Text)
    status: Mapped[str] = mapped_column(String(32))
    config: Mapped[str] = mapped_column(Text)
    seed: Mapped[int | None] = mapped_column(BigInteger, nullable=True)
    dataset_hash: Mapped[str | None] = mapped_column(String(128), nullable=True)
    promptopt_version: Mapped[str] = mapped_column(String(64))
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), index=True)
    finished_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)
    summary: Mapped[str | None] = mapped_column(Text, nullable=True)
    # The process running it ("host:pid:token") and when it last said it is alive
    # (revision 0004): a resume refuses a run whose owner is alive.
    owner: Mapped[str | None] = mapped_column(String(200), nullable=True)
    heartbeat_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)


class CandidateRow(Base):
    """A prompt configuration, keyed by ``Candidate.hash``; shared across runs."""

    __tablename__ = "po_candidates"

    hash: Mapped[str] = mapped_column(String(ID_LENGTH), primary_key=True)
    spec: Mapped[str] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))


class RunCandidate(Base):
    """A candidate as it appeared in one run: who proposed it and from which parent."""

    __tablename__ = "po_run_candidates"

    run_id: Mapped[str] = mapped_column(
        String(ID_LENGTH), ForeignKey("po_runs.id", ondelete="CASCADE"), primary_key=True
    )
    candidate_hash: Mapped[str] = mapped_column(
        String(ID_LENGTH), ForeignKey("po_candidates.hash"), primary_key=True, index=True
    )
    origin: Mapped[str] = mapped_column(String(64))
    parent_hash: Mapped[str | None] = mapped_column(
        String(ID_LENGTH), ForeignKey("po_candidates.hash"), nullable=True
    )
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))


class Evaluation(Base):
    """One candidate on one example of one split, within a run.

    The unique constraint makes recording idempotent, and its index (leading with
    ``run_id, candidate_hash, split``) is also the index leaderboard queries use; a
    second index on the same columns would only slow bulk inserts down.
    """

    __tablename__ = "po_evaluations"
    __table_args__ = (
        UniqueConstraint("run_id", "candidate_hash", "split", "example_id"),
        ForeignKeyConstraint(
            ["run_id", "candidate_hash"],
            ["po_run_candidates.run_id", "po_run_candidates.candidate_hash"],
            ondelete="CASCADE",
        ),
    )

    id: Mapped[int] = mapped_column(BigIntId, primary_key=True, autoincrement=True)
    run_id: Mapped[str] = mapped_column(String(ID_LENGTH))
    candidate_hash: Mapped[str] = mapped_column(String(ID_LENGTH))
    split: Mapped[str] = mapped_column(String(SPLIT_LENGTH))
    example_id: Mapped[str] = mapped_column(String(EXAMPLE_ID_LENGTH))
    answer: Mapped[str | None] = mapped_column(Text, nullable=True)
    gold: Mapped[str] = mapped_column(Text)
    score: Mapped[float | None] = mapped_column(Float, nullable=True)
    error: Mapped[str | None] = mapped_column(Text, nullable=True)
    tokens_in: Mapped[int] = mapped_column(Integer)
    tokens_out: Mapped[int] = mapped_column(Integer)
    latency_s: Mapped[float] = mapped_column(Float)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    # a sample was cut off at the token limit (revision 0002)
    truncated: Mapped[bool] = mapped_column(Boolean, server_default=false())
    # The metric's reason for the score (revision 0005); NULL when it said nothing.
    feedback: Mapped[str | None] = mapped_column(Text, nullable=True)


class Sample(Base):
    """One sampled generation behind an evaluation (several under self-consistency)."""

    __tablename__ = "po_samples"

    evaluation_id: Mapped[int] = mapped_column(
        BigIntId, ForeignKey("po_evaluations.id", ondelete="CASCADE"), primary_key=True
    )
    sample_index: Mapped[int] = mapped_column(Integer, primary_key=True)
    raw_output: Mapped[str] = mapped_column(Text)
    parsed_answer: Mapped[str | None] = mapped_column(Text, nullable=True)
    score: Mapped[float | None] = mapped_column(Float, nullable=True)
    tokens_in: Mapped[int] = mapped_column(Integer)
    tokens_out: Mapped[int] = mapped_column(Integer)
    latency_s: Mapped[float] = mapped_column(Float)
    cached: Mapped[bool] = mapped_column(Boolean)
    error: Mapped[str | None] = mapped_column(Text, nullable=True)
    # the backend's finish reason, "length" when cut off (revision 0002; NULL before)
    finish_reason: Mapped[str | None] = mapped_column(String(32), nullable=True)


class CacheEntry(Base):
    """A successful model response, keyed by ``GenerationRequest.cache_key(model)``."""

    __tablename__ = "po_cache"

    key: Mapped[str] = mapped_column(String(64), primary_key=True)
    model: Mapped[str] = mapped_column(Text)
    response: Mapped[str] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))


# Typed handles on the tables for Core statements (bulk inserts skip the ORM).
RUNS = cast(Table, Run.__table__)
CANDIDATES = cast(Table, CandidateRow.__table__)
RUN_CANDIDATES = cast(Table, RunCandidate.__table__)
EVALUATIONS = cast(Table, Evaluation.__table__)
SAMPLES = cast(Table, Sample.__table__)
CACHE = cast(Table, CacheEntry.__table__)

__all__ = [
    "CACHE",
    "CANDIDATES",
    "EVALUATIONS",
    "RUNS",
    "RUN_CANDIDATES",
    "SAMPLES",
    "TABLE_PREFIX",
    "VERSION_TABLE",
    "Base",
    "CacheEntry",
    "CandidateRow",
    "Evaluation",
    "Run",
    "RunCandidate",
    "Sample",
]
