"""Stored news: one row per story, deduplicated across feeds, with its symbols.

Revision ID: 0002_news
Revises: 0001
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

import bot.store.schema

revision = "0002_news"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "news_items",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("key", sa.String(length=80), nullable=False),
        sa.Column("url", sa.Text(), nullable=True),
        sa.Column("url_hash", sa.String(length=40), nullable=True),
        sa.Column("title", sa.Text(), nullable=False),
        sa.Column("title_norm", sa.String(length=40), nullable=False),
        sa.Column("source", sa.String(length=200), nullable=True),
        sa.Column("published", bot.store.schema.UtcDateTime(timezone=True), nullable=False),
        sa.Column("first_seen", bot.store.schema.UtcDateTime(timezone=True), nullable=False),
        sa.Column("symbols", sa.JSON(), nullable=False),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("key"),
    )
    with op.batch_alter_table("news_items", schema=None) as batch_op:
        batch_op.create_index("ix_news_items_published", ["published"], unique=False)
        batch_op.create_index("ix_news_items_url_hash", ["url_hash"], unique=False)
        batch_op.create_index("ix_news_items_title_norm", ["title_norm"], unique=False)


def downgrade() -> None:
    op.drop_table("news_items")
