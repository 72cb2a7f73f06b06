"""Answer counts: each sample's finish reason, and whether an evaluation was cut off.

Revision ID: 0002
Revises: 0001
Create Date: 2026-12-03

``po_samples.finish_reason`` keeps the backend's finish reason (``length``: cut off at the
token limit; NULL for rows written before this revision). ``po_evaluations.truncated``
says whether any sample of the evaluation was cut off, so leaderboards count truncated
outputs in their one GROUP BY over the evaluations, like the outputs with no answer
(``score`` not NULL, ``answer`` NULL).
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0002"
down_revision: str | Sequence[str] | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.add_column("po_samples", sa.Column("finish_reason", sa.String(length=32), nullable=True))
    op.add_column(
        "po_evaluations",
        sa.Column("truncated", sa.Boolean(), nullable=False, server_default=sa.false()),
    )


def downgrade() -> None:
    with op.batch_alter_table("po_evaluations") as batch:
        batch.drop_column("truncated")
    with op.batch_alter_table("po_samples") as batch:
        batch.drop_column("finish_reason")
