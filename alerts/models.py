"""The value types every part of marketbot speaks: quotes, news, watches, alerts, messages."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum
from typing import Any


class MarketSession(StrEnum):
    """Which part of the trading day a quote belongs to."""

    PRE = "pre"
    REGULAR = "regular"
    POST = "post"
    CLOSED = "closed"


@dataclass(frozen=True, slots=True)
class Quote:
    """One observation of a symbol's price.

    ``previous_close`` is the previous *regular-session* close: every percentage move the
    engine reports is measured against it (premarket included), which is what traders quote.
    Fields are ``None`` when the source did not provide them; the data-quality gate turns
    missing or absurd values into NoData instead of letting them reach the rules.
    """

    symbol: str
    price: float | None
    time: datetime
    session: MarketSession
    previous_close: float | None = None
    open: float | None = None
    day_volume: float | None = None
    currency: str | None = None
    exchange: str | None = None
    halted: bool = False
    source: str = "poll"

    def change_pct(self) -> float | None:
        """Percent change of ``price`` against ``previous_close``, or None when not computable."""
        if self.price is None or self.previous_close is None or self.previous_close <= 0:
            return None
        return (self.price / self.previous_close - 1.0) * 100.0


@dataclass(frozen=True, slots=True)
class NewsItem:
    """A headline from a feed; ``key`` is stable across polls so the same story is seen once."""

    key: str
    title: str
    published: datetime
    url: str | None = None
    source: str | None = None
    symbols: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class Watch:
    """A channel's standing instruction: watch ``target`` and tell us when ``rule_text`` holds.

    ``target`` is a Yahoo symbol (``NVDA``), a basket (``basket:ai``) or ``news``.
    ``rule_text`` is the canonical text of the rule (``drop 10%``); the engine parses it.
    """

    id: int
    channel: str
    target: str
    rule_text: str
    created_at: datetime
    created_by: str | None = None
    note: str | None = None


class AlertKind(StrEnum):
    FIRING = "firing"  # a fresh crossing
    ESCALATED = "escalated"  # a further tier of the same crossing
    RESOLVED = "resolved"  # the value recovered past the hysteresis band
    REPEAT = "repeat"  # still firing after the repeat interval
    DEGRADED = "degraded"  # the data behind a watch stopped being trustworthy
    RECOVERED = "recovered"  # ... and came back
    NEWS = "news"  # a headline matched a news rule
    DIGEST = "digest"  # a line of the premarket digest: where a watched symbol stands


class Severity(StrEnum):
    INFO = "info"
    WARNING = "warning"
    CRITICAL = "critical"

    @property
    def rank(self) -> int:
        return {"info": 0, "warning": 1, "critical": 2}[self.value]


@dataclass(frozen=True, slots=True)
class Alert:
    """Something worth telling a channel.

    ``key`` is deterministic for one crossing episode and tier (for example
    ``"12:NVDA:2025-01-27T09:01:00+00:00:firing:0"``), so the store can refuse a second copy:
    that is what makes a restart unable to send the same alert twice.
    """

    key: str
    channel: str
    kind: AlertKind
    symbol: str
    at: datetime
    severity: Severity = Severity.WARNING
    watch_id: int | None = None
    rule_text: str = ""
    price: float | None = None
    reference_price: float | None = None
    change_pct: float | None = None
    session: MarketSession | None = None
    tier: int = 0
    headline: str | None = None  # a news title that explains or triggered the alert
    url: str | None = None
    note: str | None = None  # the user's note on the watch
    # The move against a benchmark (NVDA -13% while NQ=F -4.3%: -8.7 points of its own):
    # the benchmark, its change against its previous close, and the symbol's change minus it.
    benchmark: str | None = None
    benchmark_change_pct: float | None = None
    relative_pct: float | None = None


def draft_class(cls: type) -> type:
    """A plain class with the slots of the frozen slots dataclass ``cls``, for hot paths.

    A frozen dataclass sets each field through ``object.__setattr__``: about 1,500
    instructions a field (an ``Alert`` costs about 37,000, a ``RuleState`` 21,000). A hot path
    instead fills a draft with plain attribute stores and re-labels it (``draft.__class__ =
    cls``, which Python allows because the two layouts are the same): the result is an
    ordinary ``cls``, frozen, equal and hashed like one built by its constructor.
    """
    return type(f"_{cls.__name__}Draft", (), {"__slots__": vars(cls)["__slots__"]})


_AlertDraft = draft_class(Alert)
_new = object.__new__


def new_alert(
    key: str,
    channel: str,
    kind: AlertKind,
    symbol: str,
    at: datetime,
    severity: Severity,
    watch_id: int | None,
    rule_text: str,
    price: float | None,
    reference_price: float | None,
    change_pct: float | None,
    session: MarketSession | None,
    tier: int,
    headline: str | None,
    url: str | None,
    note: str | None,
    benchmark: str | None,
    benchmark_change_pct: float | None,
    relative_pct: float | None,
) -> Alert:
    """``Alert(...)`` with every field, in order, at a fifth of the cost (``draft_class``):
    the engine builds one per crossing, and a storm has hundreds."""
    a: Any = _new(_AlertDraft)
    a.key = key
    a.channel = channel
    a.kind = kind
    a.symbol = symbol
    a.at = at
    a.severity = severity
    a.watch_id = watch_id
    a.rule_text = rule_text
    a.price = price
    a.reference_price = reference_price
    a.change_pct = change_pct
    a.session = session
    a.tier = tier
    a.headline = headline
    a.url = url
    a.note = note
    a.benchmark = benchmark
    a.benchmark_change_pct = benchmark_change_pct
    a.relative_pct = relative_pct
    a.__class__ = Alert
    alert: Alert = a
    return alert


@dataclass(frozen=True, slots=True)
class ContextLine:
    """A market-context figure shown with a group (index futures, the VIX)."""

    symbol: str
    label: str
    price: float | None
    change_pct: float | None


@dataclass(frozen=True, slots=True)
class AlertMessage:
    """Everything one chat message shows: the platform adapters only format this.

    ``title`` leads ("AI selloff: 6 of 8 down more than 5%"), ``alerts`` are ordered most
    severe first, ``context`` carries futures, ``headlines`` the news that explains the move,
    ``headline_times`` when each appeared relative to the move (by ``NewsItem.key``: "2h
    before"), and ``news_note`` what to say when no headline explains it.
    """

    channel: str
    title: str
    alerts: tuple[Alert, ...]
    at: datetime
    context: tuple[ContextLine, ...] = ()
    headlines: tuple[NewsItem, ...] = ()
    footer: str | None = None
    severity: Severity = Severity.WARNING
    extra: dict[str, str] = field(default_factory=dict)
    headline_times: dict[str, str] = field(default_factory=dict)
    news_note: str | None = None


@dataclass(frozen=True, slots=True)
class Mute:
    """A channel asked for quiet: ``scope`` is a symbol, ``basket:NAME`` or ``all``."""

    channel: str
    scope: str
    until: datetime
    created_at: datetime


@dataclass(frozen=True, slots=True)
class OpenGroup:
    """The channel's most recent message group, which new alerts may join by editing it."""

    group_id: int
    channel: str
    opened_at: datetime
    updated_at: datetime
    member_keys: tuple[str, ...]


class GroupAction(StrEnum):
    NEW = "new"  # post a new message
    JOIN = "join"  # add to the open group's message by editing it


@dataclass(frozen=True, slots=True)
class GroupDecision:
    """What delivery should do with some new alerts of one channel, decided by the core."""

    channel: str
    action: GroupAction
    alert_keys: tuple[str, ...]
    not_before: datetime  # group_wait: send no earlier than this, to catch names crossing together
    group_id: int | None = None  # set for JOIN
