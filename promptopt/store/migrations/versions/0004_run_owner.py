"""Runs remember which process runs them: ``owner`` and ``heartbeat_at`` on ``po_runs``.

A search updates its heartbeat while it runs; a resume refuses a run whose owner is still
alive (a fresh heartbeat), and ``promptopt runs`` shows a ``running`` run without one as
stale.

Revision ID: 0004
Revises: 0002
Create Date: 2026-12-03
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0004"
down_revision: str | Sequence[str] | None = "0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("po_runs") as batch:
        batch.add_column(sa.Column("owner", sa.String(length=200), nullable=True))
        batch.add_column(sa.Column("heartbeat_at", sa.DateTime(timezone=True), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("po_runs") as batch:
        batch.drop_column("heartbeat_at")
        batch.drop_column("owner")
