"""Volume profiles for `volume Nx` rules: past intraday volume by time of day, fetched daily."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Iterable, Mapping, Sequence
from datetime import date

from alerts.baskets import basket_name, is_basket_target, resolve_basket
from alerts.engine import Engine, build_volume_profile
from alerts.models import Watch
from alerts.ports import Clock
from bot.market import sessions
from bot.market.yahoo_poll import YahooPoller

log = logging.getLogger(__name__)


def volume_rule_symbols(
    watches: Iterable[Watch], baskets: Mapping[str, Mapping[str, Sequence[str]]]
) -> set[str]:
    """Every symbol some `volume Nx` rule looks at, baskets expanded per channel."""
    symbols: set[str] = set()
    for watch in watches:
        if not watch.rule_text.startswith("volume"):
            continue
        if is_basket_target(watch.target):
            channel_baskets = baskets.get(watch.channel, {})
            symbols.update(resolve_basket(basket_name(watch.target), channel_baskets))
        else:
            symbols.add(watch.target)
    return symbols


class VolumeProfiles:
    """Gives the engine a profile per symbol and trading day; one chart request each."""

    def __init__(self, poller: YahooPoller, engine: Engine, clock: Clock) -> None:
        self._poller = poller
        self._engine = engine
        self._clock = clock
        self._built_for: dict[str, date] = {}

    async def refresh(self, symbols: Iterable[str]) -> int:
        """Build missing or outdated profiles; returns how many were (re)built."""
        built = 0
        now = self._clock.now()
        for symbol in sorted(symbols):
            day = sessions.trading_day(symbol, now)
            if self._built_for.get(symbol) == day:
                continue
            bounds = sessions.regular_session_bounds(symbol, day)
            if bounds is None:
                continue  # no session today: nothing to compare with yet
            zone = sessions.exchange_zone(symbol)
            bars = await asyncio.to_thread(self._poller.intraday_volumes_sync, symbol, day)
            profile = build_volume_profile(
                bars, tz=zone.key, open_time=bounds[0].astimezone(zone).time()
            )
            if profile is None:
                log.warning(
                    "no intraday volume history for %s; its volume rules stay quiet", symbol
                )
                continue  # retried on the next refresh
            self._engine.set_volume_profile(symbol, profile)
            self._built_for[symbol] = day
            built += 1
        return built
