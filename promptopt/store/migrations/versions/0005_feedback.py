"""Feedback text with each evaluation: the metric's reason for the score.

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-03

Scores were already floats (partial credit); what a metric says about an answer ("expected
42, got 41", "field `date` missing") is stored beside the score.
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0005"
down_revision: str | Sequence[str] | None = "0004"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("po_evaluations") as batch:
        batch.add_column(sa.Column("feedback", sa.Text(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("po_evaluations") as batch:
        batch.drop_column("feedback")
