"""Delivery queue: outbox leases, what each render showed, per-alert delivery, lane state.

Revision ID: 0003_delivery_queue
Revises: 0002_news
Create Date: 2026-12-01 15:45:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

import bot.store.schema

revision = "0003_delivery_queue"
down_revision = "0002_news"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("outbox", schema=None) as batch_op:
        batch_op.add_column(sa.Column("lease_owner", sa.String(length=200), nullable=True))
        batch_op.add_column(
            sa.Column(
                "lease_expires_at", bot.store.schema.UtcDateTime(timezone=True), nullable=True
            )
        )
        batch_op.add_column(sa.Column("shown_alert_ids", sa.JSON(), nullable=True))
        batch_op.create_index("ix_outbox_channel_status_id", ["channel_id", "status", "id"])
    with op.batch_alter_table("alerts", schema=None) as batch_op:
        batch_op.add_column(
            sa.Column("delivered_at", bot.store.schema.UtcDateTime(timezone=True), nullable=True)
        )
    with op.batch_alter_table("channels", schema=None) as batch_op:
        batch_op.add_column(
            sa.Column("deliver_after", bot.store.schema.UtcDateTime(timezone=True), nullable=True)
        )
        batch_op.add_column(
            sa.Column("broken_since", bot.store.schema.UtcDateTime(timezone=True), nullable=True)
        )
        batch_op.add_column(sa.Column("broken_error", sa.Text(), nullable=True))
        batch_op.add_column(
            sa.Column("broken_failures", sa.Integer(), nullable=False, server_default="0")
        )
    # Alerts of groups whose message already went out count as delivered, so an upgraded
    # database does not edit old messages again.
    op.execute(
        "UPDATE alerts SET delivered_at = at WHERE muted = false AND group_id IN "
        "(SELECT group_id FROM outbox WHERE status = 'sent')"
    )


def downgrade() -> None:
    with op.batch_alter_table("channels", schema=None) as batch_op:
        batch_op.drop_column("broken_failures")
        batch_op.drop_column("broken_error")
        batch_op.drop_column("broken_since")
        batch_op.drop_column("deliver_after")
    with op.batch_alter_table("alerts", schema=None) as batch_op:
        batch_op.drop_column("delivered_at")
    with op.batch_alter_table("outbox", schema=None) as batch_op:
        batch_op.drop_index("ix_outbox_channel_status_id")
        batch_op.drop_column("shown_alert_ids")
        batch_op.drop_column("lease_expires_at")
        batch_op.drop_column("lease_owner")
