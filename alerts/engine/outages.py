"""Data outages and their notices: which symbols are NoData, and one "degraded" notice per
channel per outage, one "data is back" when the channel's last bad symbol recovers."""

from __future__ import annotations

from collections.abc import Iterable
from datetime import UTC, datetime, timedelta

from alerts.models import Alert, AlertKind, Severity
from alerts.quality import plain_reason
from alerts.wording import plural

# A notice names this many symbols, then counts the rest: a whole-feed outage of 500 names
# must still fit a chat message's title.
NOTICE_NAMES = 12


class Outages:
    """NoData per symbol and open outages per channel. Not thread-safe (one engine task)."""

    def __init__(self) -> None:
        self.symbols: dict[str, tuple[datetime, str]] = {}  # symbol -> (since, reason)
        self._bad: dict[str, set[str]] = {}  # channel -> its NoData symbols
        self._started: dict[str, datetime] = {}  # channel -> start of its open outage
        # Notices owed at the end of the current engine call: channel -> (symbol, reason).
        self._pending: dict[str, list[tuple[str, str]]] = {}

    def __contains__(self, symbol: object) -> bool:
        return symbol in self.symbols

    def restore(self, symbol: str, channel: str, since: datetime, reason: str | None) -> None:
        """A stored state says ``symbol`` was NoData since ``since``: keep that outage open, so
        a restart neither repeats its "degraded" nor loses its "recovered"."""
        prior = self.symbols.get(symbol)
        if prior is None or since < prior[0]:
            self.symbols[symbol] = (since, reason or "no data")
        self._bad.setdefault(channel, set()).add(symbol)
        start = self._started.get(channel)
        if start is None or since < start:
            self._started[channel] = since

    def joined(self, symbol: str, channel: str) -> None:
        """A new watch of ``channel`` binds a symbol already in NoData."""
        self._bad.setdefault(channel, set()).add(symbol)

    def down(self, symbol: str, reason: str, now: datetime, channels: Iterable[str]) -> bool:
        """``symbol`` became NoData (False: it already was). A channel without an open outage
        opens one and is owed a notice; its other bad symbols of this call join that notice."""
        if symbol in self.symbols:
            return False
        self.symbols[symbol] = (now, reason)
        for channel in channels:
            bad = self._bad.setdefault(channel, set())
            if symbol in bad:
                continue
            bad.add(symbol)
            if channel not in self._started:
                self._started[channel] = now
                self._pending[channel] = []
            if channel in self._pending:
                self._pending[channel].append((symbol, reason))
        return True

    def up(self, symbol: str, now: datetime, channels: Iterable[str]) -> list[Alert]:
        """``symbol`` has good data again: a "data is back" for each channel it was the last
        bad symbol of (none when the outage opened and closed within one call)."""
        self.symbols.pop(symbol, None)
        notices: list[Alert] = []
        for channel in sorted(set(channels)):
            bad = self._bad.get(channel)
            if bad is None:
                continue
            bad.discard(symbol)
            if bad:
                continue
            start = self._started.pop(channel, None)
            if start is None or self._pending.pop(channel, None) is not None:
                continue
            notices.append(_recovered(channel, symbol, start, now))
        return notices

    def forget(self, channel: str, still_watched: Iterable[str]) -> None:
        """``channel``'s watches changed: only symbols it still watches keep it degraded."""
        bad = self._bad.get(channel)
        if not bad:
            return
        still = bad & set(still_watched)
        self._bad[channel] = still
        if not still:
            self._started.pop(channel, None)

    def bad_symbols(self, channel: str) -> frozenset[str]:
        return frozenset(self._bad.get(channel, ()))

    def notices(self, now: datetime) -> list[Alert]:
        """The "degraded" notices owed by this call, one per channel; clears them."""
        out = [
            _degraded(channel, items, self._started[channel], now)
            for channel, items in self._pending.items()
            if items and channel in self._started
        ]
        self._pending.clear()
        return out


def _degraded(channel: str, items: list[tuple[str, str]], start: datetime, now: datetime) -> Alert:
    symbols = sorted({s for s, _ in items})
    return Alert(
        key=f"degraded:{channel}:{start.astimezone(UTC).isoformat()}",
        channel=channel,
        kind=AlertKind.DEGRADED,
        # The note names every symbol; the line says how many (a "*" read as a ticker).
        symbol=symbols[0] if len(symbols) == 1 else plural(len(symbols), "symbol"),
        at=now,
        severity=Severity.WARNING,
        note=degraded_note(items),
    )


def _recovered(channel: str, symbol: str, start: datetime, now: datetime) -> Alert:
    return Alert(
        key=f"recovered:{channel}:{start.astimezone(UTC).isoformat()}",
        channel=channel,
        kind=AlertKind.RECOVERED,
        symbol=symbol,
        at=now,
        severity=Severity.INFO,
        note=f"data is back after {_short(now - start)}",
    )


def degraded_note(items: Iterable[tuple[str, str]]) -> str:
    """``SMCI (bad price 0.0); AMD, NVDA (unreachable)``: every symbol, grouped by reason.

    Deterministic: symbols sorted, reasons in the order of their first symbol.
    """
    by_reason: dict[str, list[str]] = {}
    for symbol, reason in sorted(set(items)):
        by_reason.setdefault(plain_reason(reason), []).append(symbol)
    parts: list[str] = []
    named = 0
    for reason, symbols in by_reason.items():
        room = NOTICE_NAMES - named
        if room <= 0:
            break
        named += len(symbols[:room])
        parts.append(f"{', '.join(symbols[:room])} ({reason})")
    total = sum(len(s) for s in by_reason.values())
    more = f" and {total - named} more" if total > named else ""
    return "; ".join(parts) + more


def _short(d: timedelta) -> str:
    minutes = int(d.total_seconds() // 60)
    if minutes < 1:
        return f"{int(d.total_seconds())}s"
    if minutes < 120:
        return f"{minutes}m"
    return f"{minutes // 60}h{minutes % 60:02d}m"
