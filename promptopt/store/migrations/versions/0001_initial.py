"""Initial schema: runs, candidates, run candidates, evaluations, samples, response cache.

Revision ID: 0001
Revises:
Create Date: 2026-11-22

Written out in full rather than from the models, so that this revision keeps creating
exactly this schema whatever the models later become.
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0001"
down_revision: str | Sequence[str] | None = None
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

# 64-bit on servers; SQLite auto-increments only an INTEGER PRIMARY KEY.
BigIntId = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    op.create_table(
        "po_runs",
        sa.Column("id", sa.String(length=64), nullable=False),
        sa.Column("kind", sa.String(length=32), nullable=False),
        sa.Column("task", sa.Text(), nullable=False),
        sa.Column("model", sa.Text(), nullable=False),
        sa.Column("status", sa.String(length=32), nullable=False),
        sa.Column("config", sa.Text(), nullable=False),
        sa.Column("seed", sa.BigInteger(), nullable=True),
        sa.Column("dataset_hash", sa.String(length=128), nullable=True),
        sa.Column("promptopt_version", sa.String(length=64), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("finished_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("summary", sa.Text(), nullable=True),
        sa.PrimaryKeyConstraint("id", name="pk_po_runs"),
    )
    op.create_index("ix_po_runs_created_at", "po_runs", ["created_at"])

    op.create_table(
        "po_candidates",
        sa.Column("hash", sa.String(length=64), nullable=False),
        sa.Column("spec", sa.Text(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("hash", name="pk_po_candidates"),
    )

    op.create_table(
        "po_run_candidates",
        sa.Column("run_id", sa.String(length=64), nullable=False),
        sa.Column("candidate_hash", sa.String(length=64), nullable=False),
        sa.Column("origin", sa.String(length=64), nullable=False),
        sa.Column("parent_hash", sa.String(length=64), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["run_id"], ["po_runs.id"], name="fk_po_run_candidates_run_id_po_runs", ondelete="CASCADE"
        ),
        sa.ForeignKeyConstraint(
            ["candidate_hash"],
            ["po_candidates.hash"],
            name="fk_po_run_candidates_candidate_hash_po_candidates",
        ),
        sa.ForeignKeyConstraint(
            ["parent_hash"], ["po_candidates.hash"], name="fk_po_run_candidates_parent_hash_po_candidates"
        ),
        sa.PrimaryKeyConstraint("run_id", "candidate_hash", name="pk_po_run_candidates"),
    )
    op.create_index("ix_po_run_candidates_candidate_hash", "po_run_candidates", ["candidate_hash"])

    op.create_table(
        "po_evaluations",
        sa.Column("id", BigIntId, autoincrement=True, nullable=False),
        sa.Column("run_id", sa.String(length=64), nullable=False),
        sa.Column("candidate_hash", sa.String(length=64), nullable=False),
        sa.Column("split", sa.String(length=64), nullable=False),
        sa.Column("example_id", sa.String(length=255), nullable=False),
        sa.Column("answer", sa.Text(), nullable=True),
        sa.Column("gold", sa.Text(), nullable=False),
        sa.Column("score", sa.Float(), nullable=True),
        sa.Column("error", sa.Text(), nullable=True),
        sa.Column("tokens_in", sa.Integer(), nullable=False),
        sa.Column("tokens_out", sa.Integer(), nullable=False),
        sa.Column("latency_s", sa.Float(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["run_id", "candidate_hash"],
            ["po_run_candidates.run_id", "po_run_candidates.candidate_hash"],
            name="fk_po_evaluations_run_id_candidate_hash_po_run_candidates",
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name="pk_po_evaluations"),
        # Also the index of leaderboard queries (run_id, candidate_hash, split).
        sa.UniqueConstraint(
            "run_id",
            "candidate_hash",
            "split",
            "example_id",
            name="uq_po_evaluations_run_id_candidate_hash_split_example_id",
        ),
    )

    op.create_table(
        "po_samples",
        sa.Column("evaluation_id", BigIntId, nullable=False),
        sa.Column("sample_index", sa.Integer(), nullable=False),
        sa.Column("raw_output", sa.Text(), nullable=False),
        sa.Column("parsed_answer", sa.Text(), nullable=True),
        sa.Column("score", sa.Float(), nullable=True),
        sa.Column("tokens_in", sa.Integer(), nullable=False),
        sa.Column("tokens_out", sa.Integer(), nullable=False),
        sa.Column("latency_s", sa.Float(), nullable=False),
        sa.Column("cached", sa.Boolean(), nullable=False),
        sa.Column("error", sa.Text(), nullable=True),
        sa.ForeignKeyConstraint(
            ["evaluation_id"],
            ["po_evaluations.id"],
            name="fk_po_samples_evaluation_id_po_evaluations",
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("evaluation_id", "sample_index", name="pk_po_samples"),
    )

    op.create_table(
        "po_cache",
        sa.Column("key", sa.String(length=64), nullable=False),
        sa.Column("model", sa.Text(), nullable=False),
        sa.Column("response", sa.Text(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("key", name="pk_po_cache"),
    )


def downgrade() -> None:
    op.drop_table("po_cache")
    op.drop_table("po_samples")
    op.drop_table("po_evaluations")
    op.drop_index("ix_po_run_candidates_candidate_hash", table_name="po_run_candidates")
    op.drop_table("po_run_candidates")
    op.drop_table("po_candidates")
    op.drop_index("ix_po_runs_created_at", table_name="po_runs")
    op.drop_table("po_runs")
