"""Outbox for many workers: NOTIFY on insert (PostgreSQL), indexes for claims and confirms.

On PostgreSQL a statement-level trigger makes the notification part of the inserting
transaction itself: PostgreSQL delivers it on commit (never for a rollback) and folds repeats
within one transaction into one. SQLite has no NOTIFY: one process delivers there and
wakes in process.

Revision ID: 0004_outbox_notify
Revises: 0003_delivery_queue
Create Date: 2026-12-01 16:05:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0004_outbox_notify"
down_revision = "0003_delivery_queue"
branch_labels = None
depends_on = None

CHANNEL = "marketbot_outbox"  # bot.pg_wake.OUTBOX_CHANNEL


OPEN_ROWS = "status IN ('pending', 'sending')"


def upgrade() -> None:
    # A lane's head is the lowest open id of its channel; sent rows stay in the table as
    # history, so claims look only at open rows. Members and open rows of a group are read
    # by every claim and confirm.
    op.create_index(
        "ix_outbox_open_channel_id",
        "outbox",
        ["channel_id", "id"],
        postgresql_where=sa.text(OPEN_ROWS),
        sqlite_where=sa.text(OPEN_ROWS),
    )
    op.create_index("ix_outbox_group", "outbox", ["group_id"])
    op.create_index("ix_alerts_group", "alerts", ["group_id"])
    if op.get_bind().dialect.name != "postgresql":
        return
    op.execute(
        f"""
        CREATE OR REPLACE FUNCTION marketbot_outbox_notify() RETURNS trigger
        LANGUAGE plpgsql AS $$
        BEGIN
            PERFORM pg_notify('{CHANNEL}', '');
            RETURN NULL;
        END
        $$
        """
    )
    op.execute(
        "CREATE TRIGGER outbox_notify AFTER INSERT ON outbox "
        "FOR EACH STATEMENT EXECUTE FUNCTION marketbot_outbox_notify()"
    )


def downgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        op.execute("DROP TRIGGER IF EXISTS outbox_notify ON outbox")
        op.execute("DROP FUNCTION IF EXISTS marketbot_outbox_notify()")
    op.drop_index("ix_alerts_group", table_name="alerts")
    op.drop_index("ix_outbox_group", table_name="outbox")
    op.drop_index("ix_outbox_open_channel_id", table_name="outbox")
