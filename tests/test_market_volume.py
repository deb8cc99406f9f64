"""`volume Nx` with live data: past intraday bars from (fake) Yahoo become the engine's profile."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest

from alerts.engine import Engine
from alerts.models import AlertKind, MarketSession, Quote, Watch
from alerts.ports import ManualClock
from bot.fakes.yahoo_server import FakeYahoo
from bot.market.volume import VolumeProfiles, volume_rule_symbols
from bot.market.yahoo_poll import YahooPoller

NEW_YORK = ZoneInfo("America/New_York")
# Monday 2025-01-27, 10:30 ET: an hour into the regular session.
MORNING = datetime(2025, 1, 27, 15, 30, tzinfo=UTC)
BAR_VOLUME = 10_000.0


def _past_bars() -> list[tuple[datetime, float, float]]:
    """Three weeks of 5-minute regular-session bars, every bar the same volume."""
    bars = []
    for offset in range(1, 22):
        day = date(2025, 1, 27) - timedelta(days=offset)
        if day.weekday() >= 5:
            continue
        open_ = datetime(day.year, day.month, day.day, 9, 30, tzinfo=NEW_YORK)
        for i in range(78):
            bars.append(((open_ + timedelta(minutes=5 * i)).astimezone(UTC), 140.0, BAR_VOLUME))
    return bars


@pytest.fixture
def with_history(fake_yahoo: FakeYahoo) -> FakeYahoo:
    fake_yahoo.set_closes("NVDA", [(date(2025, 1, 24), 142.62)])
    fake_yahoo.set_intraday("NVDA", _past_bars())
    return fake_yahoo


def _watch(rule: str, target: str = "NVDA") -> Watch:
    return Watch(1, "console:default", target, rule, MORNING)


def test_only_volume_rules_need_profiles_and_baskets_expand() -> None:
    watches = [
        _watch("volume 3x"),
        Watch(2, "slack:C1", "basket:chips", "volume 2x", MORNING),
        Watch(3, "slack:C1", "AMD", "drop 5%", MORNING),
    ]
    symbols = volume_rule_symbols(watches, {"slack:C1": {"chips": ("AMD", "AVGO")}})
    assert symbols == {"NVDA", "AMD", "AVGO"}


async def test_a_profile_from_past_bars_lets_a_volume_surge_fire(with_history: FakeYahoo) -> None:
    clock = ManualClock(MORNING)
    poller = YahooPoller(clock=clock, base_url=with_history.base_url)
    engine = Engine()
    engine.load([_watch("volume 3x")], [])
    profiles = VolumeProfiles(poller, engine, clock)

    assert await profiles.refresh({"NVDA"}) == 1
    assert await profiles.refresh({"NVDA"}) == 0  # one fetch per symbol and trading day
    charts = [p for p in with_history.paths if "interval=5m" in p]
    assert len(charts) == 1

    # By 10:30 a normal day has traded 12 bars' worth; 3.5 times that is a surge.
    normal_so_far = 12 * BAR_VOLUME
    calm = Quote(
        "NVDA",
        141.0,
        MORNING,
        MarketSession.REGULAR,
        previous_close=142.62,
        day_volume=1.2 * normal_so_far,
    )
    assert engine.on_quotes([calm], MORNING).alerts == ()
    later = MORNING + timedelta(minutes=1)
    surge = Quote(
        "NVDA",
        139.0,
        later,
        MarketSession.REGULAR,
        previous_close=142.62,
        day_volume=3.5 * normal_so_far,
    )
    [alert] = engine.on_quotes([surge], later).alerts
    assert alert.kind is AlertKind.FIRING
    assert alert.rule_text == "volume 3x"
    poller.close()
