"""Channel settings: a typed value in the code, the same JSON object in the database as before."""

from __future__ import annotations

import logging
from dataclasses import replace
from datetime import UTC, date, datetime, time
from typing import Any

import pytest
from sqlalchemy import update
from sqlalchemy.orm import Session

from alerts.channel_settings import ChannelSettings
from alerts.commands import CommandContext, CommandRouter
from alerts.ports import ManualClock
from bot.store import SqlStore
from bot.store.schema import ChannelRow

NOW = datetime(2025, 1, 27, 9, tzinfo=UTC)
CHANNEL = "slack:C1"
EVERYTHING = ChannelSettings(
    digest=time(7, 30),
    digest_zone="Europe/Berlin",
    digest_sent=date(2025, 1, 24),
    resolved=True,
    ping_role="123456789012",
)


def _store_raw(store: SqlStore, channel: str, stored: Any) -> None:
    """Write the settings column as another version (or a hand edit) left it."""
    store.update_channel_settings(channel, lambda s: s, NOW)  # the channel row exists
    with Session(store.engine) as session, session.begin():
        session.execute(update(ChannelRow).where(ChannelRow.id == channel).values(settings=stored))


def test_round_trip_through_the_store(store: SqlStore) -> None:
    assert store.channel_settings(CHANNEL) == ChannelSettings()
    written = store.update_channel_settings(CHANNEL, lambda s: EVERYTHING, NOW)
    assert written == EVERYTHING
    assert store.channel_settings(CHANNEL) == EVERYTHING
    store.update_channel_settings(CHANNEL, lambda s: replace(s, digest=None, ping_role=None), NOW)
    assert store.channel_settings(CHANNEL) == replace(EVERYTHING, digest=None, ping_role=None)


def test_the_stored_format_is_the_one_earlier_versions_wrote(store: SqlStore) -> None:
    # What `/digest on 07:30 Europe/Berlin`, a sent digest, `/resolved on` and `/pingrole`
    # stored before settings were typed.
    _store_raw(
        store,
        CHANNEL,
        {
            "digest": "07:30",
            "digest_zone": "Europe/Berlin",
            "digest_sent": "2025-01-24",
            "resolved": True,
            "ping_role": "123456789012",
        },
    )
    assert store.channel_settings(CHANNEL) == EVERYTHING
    assert EVERYTHING.to_stored() == {
        "digest": "07:30",
        "digest_zone": "Europe/Berlin",
        "digest_sent": "2025-01-24",
        "resolved": True,
        "ping_role": "123456789012",
    }
    _store_raw(store, "slack:C2", {"digest": None, "digest_zone": None})  # `/digest off`
    assert store.channel_settings("slack:C2") == ChannelSettings()


def test_malformed_values_read_as_defaults_with_one_log_line_each(
    store: SqlStore, caplog: pytest.LogCaptureFixture
) -> None:
    _store_raw(
        store,
        CHANNEL,
        {
            "digest": "25:99",
            "digest_zone": "Mars/Olympus",
            "digest_sent": "yesterday",
            "resolved": "yes",
            "ping_role": 42,
            "ping_role_colour": "red",  # a key from a newer version
        },
    )
    with caplog.at_level(logging.WARNING, logger="bot.store.sql"):
        assert store.channel_settings(CHANNEL) == ChannelSettings()
        assert store.channel_settings(CHANNEL) == ChannelSettings()  # read again: no new lines
    named = sorted(r.getMessage().split("=")[0].rsplit(" ", 1)[-1] for r in caplog.records)
    assert all(r.levelno == logging.WARNING for r in caplog.records)
    assert named == ["digest", "digest_sent", "digest_zone", "ping_role", "resolved"]
    assert all(CHANNEL in r.getMessage() for r in caplog.records)
    # A command still works on such a channel, replaces what it sets and keeps the unknown key.
    router = CommandRouter(store, ManualClock(NOW))
    ctx = CommandContext(channel=CHANNEL, user="U1", platform="slack")
    assert router.handle("/resolved on", ctx).ok
    assert store.channel_settings(CHANNEL) == ChannelSettings(resolved=True)
    with Session(store.engine) as session:
        row = session.get(ChannelRow, CHANNEL)
        assert row is not None
        assert row.settings["ping_role_colour"] == "red"
        assert row.settings["resolved"] is True


def test_settings_that_are_not_an_object_read_as_defaults(
    store: SqlStore, caplog: pytest.LogCaptureFixture
) -> None:
    _store_raw(store, "slack:C3", ["digest", "08:00"])
    with caplog.at_level(logging.WARNING, logger="bot.store.sql"):
        assert store.channel_settings("slack:C3") == ChannelSettings()
    assert "not a JSON object" in caplog.text
    store.update_channel_settings("slack:C3", lambda s: replace(s, digest=time(8)), NOW)
    assert store.channel_settings("slack:C3") == ChannelSettings(digest=time(8))
