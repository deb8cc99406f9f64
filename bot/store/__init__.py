"""Persistence: the SQLAlchemy store and its schema."""

from bot.store.sql import Delivery, SqlStore, StateRecord

__all__ = ["Delivery", "SqlStore", "StateRecord"]
