"""The small interfaces the core defines and the adapters in ``bot/`` implement."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from enum import StrEnum
from typing import Protocol, runtime_checkable

from alerts.channel_settings import ChannelSettings
from alerts.models import Alert, AlertMessage, Mute, NewsItem, Quote, Watch


@runtime_checkable
class Clock(Protocol):
    """Where every piece of marketbot gets the time; tests and replays inject their own."""

    def now(self) -> datetime: ...


class SystemClock:
    def now(self) -> datetime:
        return datetime.now(UTC)


class ManualClock:
    """A clock that only moves when told to (tests, replays).

    ``subscribe`` lets the scheduler hear that time moved, so work due then runs at once.
    """

    def __init__(self, start: datetime) -> None:
        if start.tzinfo is None:
            raise ValueError("ManualClock needs an aware datetime")
        self._now = start
        self._listeners: list[Callable[[datetime], None]] = []

    def subscribe(self, listener: Callable[[datetime], None]) -> None:
        self._listeners.append(listener)

    def now(self) -> datetime:
        return self._now

    def set(self, when: datetime) -> None:
        if when < self._now:
            raise ValueError("time does not go backwards")
        moved = when != self._now
        self._now = when
        if moved:
            for listener in self._listeners:
                listener(when)

    def advance(self, delta: timedelta) -> None:
        self.set(self._now + delta)


class MarketDataError(Exception):
    """The data source could not answer (network down, rate limited, garbage)."""


class MarketData(Protocol):
    """A source of quotes. ``poll`` answers now; ``stream`` pushes as prices change."""

    async def poll(self, symbols: Sequence[str]) -> list[Quote]: ...

    def stream(self, symbols: Sequence[str]) -> AsyncIterator[list[Quote]]: ...

    async def close(self) -> None: ...


class SymbolStatus(StrEnum):
    KNOWN = "known"  # the data source has this symbol
    UNKNOWN = "unknown"  # the data source says it does not exist
    UNCHECKED = "unchecked"  # the data source could not be asked (unreachable, rate limited)


@dataclass(frozen=True, slots=True)
class SymbolCheck:
    """What the data source said about a symbol; ``detail`` is its reason, for people."""

    symbol: str
    status: SymbolStatus
    detail: str = ""


class SymbolChecker(Protocol):
    """Asks the data source whether a symbol exists before a channel watches it.

    Blocking (commands run in a worker thread); implementations cache their answers, so a
    symbol is asked about once, and never raise: trouble is ``UNCHECKED``.
    """

    def check(self, symbol: str) -> SymbolCheck: ...


class NewsFeed(Protocol):
    async def fetch(self) -> list[NewsItem]: ...


@dataclass(frozen=True, slots=True)
class MessageRef:
    """Where a sent message lives on its platform, so it can be edited in place later."""

    channel: str
    message_id: str


class DeliveryError(Exception):
    """The platform refused or failed a send. ``retryable`` says whether trying later may help.

    ``retry_after``: the platform asked for this pause (seconds from when it answered).
    ``outcome_unknown``: the request may have been processed (connection reset, timeout), so
    it is reconciled with the platform before any resend. ``destination_gone``: the channel
    refuses everything (not found, archived, bot removed, forbidden). ``message_gone``: the
    message to edit no longer exists. ``platform_wide``: the pause applies to every channel
    of the platform (a global limit), not just this one.
    """

    def __init__(
        self,
        message: str,
        *,
        retryable: bool,
        retry_after: float | None = None,
        outcome_unknown: bool = False,
        destination_gone: bool = False,
        message_gone: bool = False,
        platform_wide: bool = False,
    ) -> None:
        super().__init__(message)
        self.retryable = retryable
        self.retry_after = retry_after
        self.outcome_unknown = outcome_unknown
        self.destination_gone = destination_gone
        self.message_gone = message_gone
        self.platform_wide = platform_wide


class ChatPlatform(Protocol):
    """A place alerts are posted. ``idempotency_key`` lets the platform drop a retried duplicate."""

    name: str

    def handles(self, channel: str) -> bool: ...

    async def send(self, message: AlertMessage, *, idempotency_key: str) -> MessageRef: ...

    async def edit(self, ref: MessageRef, message: AlertMessage) -> MessageRef: ...


@runtime_checkable
class SentFinder(Protocol):
    """A platform that can tell whether a message with this key was already posted.

    Used only for a post whose earlier attempt's outcome is unknown (a lease that expired);
    platforms with a server-side idempotency key (Discord's nonce) need not implement it.
    ``after``: the id of a message known to be older than any attempt of this post (the
    window to search). ``None`` is an answer only from a look made after the earlier attempt
    can no longer land.
    """

    async def find_sent(
        self, channel: str, idempotency_key: str, *, after: str | None = None
    ) -> MessageRef | None: ...


@runtime_checkable
class PacedPlatform(Protocol):
    """A platform whose channels take at most one message per ``per_channel_interval`` s."""

    per_channel_interval: float


@runtime_checkable
class GloballyPaced(Protocol):
    """A platform whose requests share one global budget (Discord's 50 a second): delivery
    starts the lanes of such a platform first, as many as ``free_slots`` says it can let go."""

    def free_slots(self) -> int: ...


class Store(Protocol):
    """Persistence the command layer and the pipeline need; ``bot.store`` implements it."""

    def add_watch(
        self,
        channel: str,
        target: str,
        rule_text: str,
        *,
        now: datetime,
        created_by: str | None = None,
        note: str | None = None,
    ) -> tuple[Watch, bool]:
        """Returns the watch and whether it was new (an identical watch is not duplicated)."""
        ...

    def remove_watches(
        self, channel: str, target: str | None, rule_text: str | None
    ) -> list[Watch]:
        """``target=None`` removes every watch of the channel; ``rule_text=None`` every rule."""
        ...

    def list_watches(self, channel: str | None = None) -> list[Watch]: ...

    def save_basket(
        self, channel: str, name: str, symbols: Sequence[str], *, now: datetime
    ) -> None: ...

    def delete_basket(self, channel: str, name: str) -> bool: ...

    def list_baskets(self, channel: str) -> dict[str, tuple[str, ...]]: ...

    def add_mute(self, mute: Mute) -> None: ...

    def remove_mutes(self, channel: str, scope: str | None) -> int: ...

    def active_mutes(self, channel: str, now: datetime) -> list[Mute]: ...

    def recent_alerts(self, channel: str, limit: int) -> list[Alert]: ...

    def channel_settings(self, channel: str) -> ChannelSettings: ...

    def update_channel_settings(
        self, channel: str, change: Callable[[ChannelSettings], ChannelSettings], now: datetime
    ) -> ChannelSettings:
        """Apply ``change`` to the channel's settings in one transaction; the new settings."""
        ...


@runtime_checkable
class ImageUploader(Protocol):
    """A platform that can also post a chart image to a channel (Slack, Discord)."""

    async def upload_image(
        self, channel: str, image: bytes, *, filename: str = "chart.png", title: str = "chart"
    ) -> object: ...
