"""Notices through the outbox: digests and mute summaries are rows of their channel's lane.

A notice row has no alert group (``group_id`` may be NULL); ``action`` says what it is
("digest", "summary"), ``payload`` what to build, ``expires_at`` when it is no longer worth
posting, and ``message_id`` the id of the message the platform accepted for it.

Revision ID: 0005_outbox
Revises: 0004_outbox_notify
Create Date: 2026-12-01 19:30:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

import bot.store.schema

revision = "0005_outbox"
down_revision = "0004_outbox_notify"
branch_labels = None
depends_on = None

OPEN_ROWS = "status IN ('pending', 'sending')"


def upgrade() -> None:
    # SQLite rebuilds the table to change a column; the partial index is dropped first and
    # made again after, so its WHERE clause does not depend on what reflection keeps.
    op.drop_index("ix_outbox_open_channel_id", table_name="outbox")
    with op.batch_alter_table("outbox", schema=None) as batch_op:
        batch_op.alter_column("group_id", existing_type=sa.Integer(), nullable=True)
        batch_op.add_column(sa.Column("payload", sa.JSON(), nullable=True))
        batch_op.add_column(
            sa.Column("expires_at", bot.store.schema.UtcDateTime(timezone=True), nullable=True)
        )
        batch_op.add_column(sa.Column("message_id", sa.String(length=200), nullable=True))
    op.create_index(
        "ix_outbox_open_channel_id",
        "outbox",
        ["channel_id", "id"],
        postgresql_where=sa.text(OPEN_ROWS),
        sqlite_where=sa.text(OPEN_ROWS),
    )


def downgrade() -> None:
    op.execute("DELETE FROM outbox WHERE group_id IS NULL")
    op.drop_index("ix_outbox_open_channel_id", table_name="outbox")
    with op.batch_alter_table("outbox", schema=None) as batch_op:
        batch_op.drop_column("message_id")
        batch_op.drop_column("expires_at")
        batch_op.drop_column("payload")
        batch_op.alter_column("group_id", existing_type=sa.Integer(), nullable=False)
    op.create_index(
        "ix_outbox_open_channel_id",
        "outbox",
        ["channel_id", "id"],
        postgresql_where=sa.text(OPEN_ROWS),
        sqlite_where=sa.text(OPEN_ROWS),
    )
