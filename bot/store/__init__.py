"""Persistence: the SQLAlchemy store, its schema and the outbox queue."""

from bot.store.outbox import BrokenDestination, Delivery
from bot.store.sql import SqlStore, StateRecord

__all__ = ["BrokenDestination", "Delivery", "SqlStore", "StateRecord"]
