"""The small interfaces the core defines and the adapters in ``bot/`` implement."""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Protocol, runtime_checkable

from alerts.models import AlertMessage, NewsItem, Quote


@runtime_checkable
class Clock(Protocol):
    """Where every piece of marketbot gets the time; tests and replays inject their own."""

    def now(self) -> datetime: ...


class SystemClock:
    def now(self) -> datetime:
        return datetime.now(UTC)


class ManualClock:
    """A clock that only moves when told to (tests, replays)."""

    def __init__(self, start: datetime) -> None:
        if start.tzinfo is None:
            raise ValueError("ManualClock needs an aware datetime")
        self._now = start

    def now(self) -> datetime:
        return self._now

    def set(self, when: datetime) -> None:
        if when < self._now:
            raise ValueError("time does not go backwards")
        self._now = when

    def advance(self, delta: timedelta) -> None:
        self.set(self._now + delta)


class MarketDataError(Exception):
    """The data source could not answer (network down, rate limited, garbage)."""


class MarketData(Protocol):
    """A source of quotes. ``poll`` answers now; ``stream`` pushes as prices change."""

    async def poll(self, symbols: Sequence[str]) -> list[Quote]: ...

    def stream(self, symbols: Sequence[str]) -> AsyncIterator[list[Quote]]: ...

    async def close(self) -> None: ...


class NewsFeed(Protocol):
    async def fetch(self) -> list[NewsItem]: ...


@dataclass(frozen=True, slots=True)
class MessageRef:
    """Where a sent message lives on its platform, so it can be edited in place later."""

    channel: str
    message_id: str


class DeliveryError(Exception):
    """The platform refused or failed a send. ``retryable`` says whether trying later may help."""

    def __init__(self, message: str, *, retryable: bool, retry_after: float | None = None) -> None:
        super().__init__(message)
        self.retryable = retryable
        self.retry_after = retry_after


class ChatPlatform(Protocol):
    """A place alerts are posted. ``idempotency_key`` lets the platform drop a retried duplicate."""

    name: str

    def handles(self, channel: str) -> bool: ...

    async def send(self, message: AlertMessage, *, idempotency_key: str) -> MessageRef: ...

    async def edit(self, ref: MessageRef, message: AlertMessage) -> MessageRef: ...
