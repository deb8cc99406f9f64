"""The daily premarket digest: what it shows, and when a channel's digest is due."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import date, datetime, time, timedelta
from typing import TYPE_CHECKING
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError, available_timezones

from alerts.baskets import BASKET_PREFIX, is_basket_target
from alerts.context import context_lines
from alerts.models import Alert, AlertKind, AlertMessage, ContextLine, NewsItem, Quote, Severity

if TYPE_CHECKING:  # alerts.channel_settings reads its digest fields with this module's parsers
    from alerts.channel_settings import ChannelSettings

MAX_DIGEST_HEADLINES = 3
# The market's state before the open, in the order traders read it.
DIGEST_INDEX_SYMBOLS = ("ES=F", "NQ=F", "YM=F", "^VIX")
# A digest missed at its time (the bot was down, the platform failed) is still worth sending
# for a while; after that it would describe a market that has moved on.
DIGEST_WINDOW = timedelta(hours=2)

# Short names people type for the zones US and European desks work in.
ZONE_ALIASES: Mapping[str, str] = {
    "ET": "America/New_York",
    "EST": "America/New_York",
    "EDT": "America/New_York",
    "CT": "America/Chicago",
    "PT": "America/Los_Angeles",
    "UTC": "UTC",
    "GMT": "UTC",
    "UK": "Europe/London",
    "CET": "Europe/Berlin",
    "CEST": "Europe/Berlin",
}


class DigestSettingError(ValueError):
    """A digest time or zone that cannot be used; the message says what is expected."""


def digest_key(channel: str, day: date) -> str:
    """The digest's idempotency key: one digest per channel per trading day."""
    return f"digest:{channel}:{day.isoformat()}"


# --- when ----------------------------------------------------------------------------------


def parse_digest_time(text: str) -> time:
    hours, sep, minutes = text.partition(":")
    # isascii: str.isdigit() also accepts "¹" and "٣", which int() then refuses.
    if not (sep and text.isascii() and hours.isdigit() and minutes.isdigit() and len(minutes) == 2):
        raise DigestSettingError(f"Give the time as HH:MM, for example 08:00 (not {text[:20]!r}).")
    if int(hours) > 23 or int(minutes) > 59:
        raise DigestSettingError(f"{text[:20]} is not a time of day; use 00:00 to 23:59.")
    return time(int(hours), int(minutes))


def parse_zone(text: str) -> str:
    """An IANA zone name (any case) or a common short form (ET, CET, UTC) -> the IANA name."""
    alias = ZONE_ALIASES.get(text.upper())
    if alias is not None:
        return alias
    if "/" in text:
        try:
            ZoneInfo(text)
            return text
        except (ZoneInfoNotFoundError, ValueError):
            folded = {name.lower(): name for name in available_timezones()}
            if text.lower() in folded:
                return folded[text.lower()]
    raise DigestSettingError(
        f"Unknown time zone {text[:40]!r}: use a name like America/New_York, Europe/Berlin, "
        "or ET, CET, UTC."
    )


@dataclass(frozen=True, slots=True)
class DigestSchedule:
    """A channel's daily digest: local wall-clock time in a zone, on trading days."""

    at: time
    zone: str

    @classmethod
    def from_settings(cls, settings: ChannelSettings, default_zone: str) -> DigestSchedule | None:
        """From a channel's settings (``digest``, ``digest_zone``); None when off."""
        if settings.digest is None:
            return None
        return cls(settings.digest, settings.digest_zone or default_zone)

    def local_day(self, now: datetime) -> date:
        return now.astimezone(ZoneInfo(self.zone)).date()

    def scheduled(self, day: date) -> datetime:
        """``at`` on ``day`` in the zone. The zone's own offset that day applies, so 08:00 stays
        08:00 across DST (a time skipped by the spring change runs an hour later)."""
        return datetime.combine(day, self.at, tzinfo=ZoneInfo(self.zone))

    def due_day(
        self,
        now: datetime,
        *,
        is_trading_day: Callable[[date], bool],
        sent_day: date | None,
        window: timedelta = DIGEST_WINDOW,
    ) -> date | None:
        """The day whose digest should go out now, or None.

        Due from the scheduled time for ``window``, on trading days, unless that day's digest
        was already sent: a failed send is due again on the next check, a restart after the
        send is not.
        """
        today = self.local_day(now)
        # Yesterday too: a late digest's window may run past local midnight.
        for day in (today, today - timedelta(days=1)):
            start = self.scheduled(day)
            if start <= now < start + window:
                return day if day != sent_day and is_trading_day(day) else None
        return None

    def text(self) -> str:
        return f"{self.at:%H:%M} {self.zone}"


# --- what ----------------------------------------------------------------------------------


def digest_symbols(
    targets: Iterable[str], baskets: Mapping[str, Sequence[str]]
) -> tuple[tuple[str, ...], dict[str, tuple[str, ...]]]:
    """The symbols a channel's digest covers: watched symbols and every member of a watched
    basket (a channel watching only ``basket:ai`` still gets its eight names), plus the
    watched baskets themselves."""
    symbols: dict[str, None] = {}
    watched_baskets: dict[str, tuple[str, ...]] = {}
    for target in targets:
        if target == "news":
            continue
        if is_basket_target(target):
            name = target[len(BASKET_PREFIX) :].lower()
            members = tuple(baskets.get(name, ()))
            watched_baskets[name] = members
            symbols.update(dict.fromkeys(members))
        else:
            symbols[target] = None
    return tuple(sorted(symbols)), watched_baskets


def basket_summary(name: str, members: Sequence[str], latest: Mapping[str, Quote]) -> str:
    """``basket:ai −7.4% avg, 8 of 8 down``; members without a quote are counted apart."""
    changes = [c for c in (_change(latest.get(m)) for m in members) if c is not None]
    if not changes:
        return f"basket:{name} no quotes yet"
    average = sum(changes) / len(changes)
    down = sum(1 for c in changes if c < 0)
    text = f"basket:{name} {average:+.1f}% avg, {down} of {len(changes)} down"
    missing = len(members) - len(changes)
    return text + (f" ({missing} without a quote)" if missing else "")


def compose_digest(
    channel: str,
    symbols: Sequence[str],
    latest: Mapping[str, Quote],
    *,
    day: date,
    now: datetime,
    context: Sequence[ContextLine] | None = None,
    headlines: Sequence[NewsItem] = (),
    baskets: Mapping[str, Sequence[str]] | None = None,
    theme: str | None = None,
    notes: Sequence[str] = (),
) -> AlertMessage:
    """Biggest movers first against the previous close; symbols without a usable quote are
    named in the footer, with the basket summaries and calendar notes (an early close).

    ``context`` defaults to the index futures and the VIX from ``latest``.
    """
    lines: list[Alert] = []
    missing: list[str] = []
    for symbol in dict.fromkeys(symbols):
        quote = latest.get(symbol)
        change = _change(quote)
        if quote is None or quote.price is None or change is None:
            missing.append(symbol)
            continue
        lines.append(
            Alert(
                key=f"{digest_key(channel, day)}:{symbol}",
                channel=channel,
                kind=AlertKind.DIGEST,
                symbol=symbol,
                at=quote.time,
                severity=Severity.INFO,
                price=quote.price,
                reference_price=quote.previous_close,
                change_pct=change,
                session=quote.session,
            )
        )
    lines.sort(key=lambda a: (-abs(a.change_pct or 0.0), a.symbol))
    title = f"Premarket digest {day:%a %Y-%m-%d}"
    if theme:
        title += f" — {theme}"
    if lines:
        top = lines[0]
        title += f": biggest move {top.symbol} {top.change_pct:+.1f}%"
    footer_parts = [basket_summary(n, m, latest) for n, m in sorted((baskets or {}).items())]
    footer_parts += list(notes)
    if missing:
        footer_parts.append(f"No quote yet: {', '.join(missing)}")
    return AlertMessage(
        channel=channel,
        title=title,
        alerts=tuple(lines),
        at=now,
        context=tuple(
            context if context is not None else context_lines(DIGEST_INDEX_SYMBOLS, latest)
        ),
        headlines=tuple(headlines[:MAX_DIGEST_HEADLINES]),
        footer=" · ".join(footer_parts) or None,
        severity=Severity.INFO,
    )


def digest_moves(message: AlertMessage) -> list[tuple[str, float]]:
    """(symbol, % move) of each digest line, biggest first: what the digest chart draws."""
    return [(a.symbol, a.change_pct) for a in message.alerts if a.change_pct is not None]


def digest_text(message: AlertMessage) -> str:
    """The digest as a command reply (light markdown), line for line what the post shows."""
    out = [f"*{message.title}*"]
    for line in message.alerts:
        session = f", {line.session.value}" if line.session else ""
        out.append(f"{line.symbol}: {line.price:,.2f} ({line.change_pct:+.2f}%{session})")
    if message.context:
        out.append("Market: " + " · ".join(_context_text(c) for c in message.context))
    if message.headlines:
        out.append("News:")
        out += [
            f"• {item.title}" + (f" ({item.source})" if item.source else "")
            for item in message.headlines
        ]
    if message.footer:
        out.append(message.footer)
    return "\n".join(out)


def _context_text(line: ContextLine) -> str:
    change = f" {line.change_pct:+.1f}%" if line.change_pct is not None else ""
    price = f" {line.price:,.2f}" if line.price is not None else ""
    return f"{line.label}{change}{price}"


def _change(quote: Quote | None) -> float | None:
    return quote.change_pct() if quote is not None and quote.price is not None else None
