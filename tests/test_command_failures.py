"""Commands never go unanswered: huge numbers get a one-line refusal, a bug gets an apology."""

from __future__ import annotations

import logging

import pytest

from alerts.commands import CommandContext, CommandRouter
from alerts.ports import ManualClock
from bot.store import SqlStore

CTX = CommandContext(channel="slack:C1", user="U1", platform="slack", can_manage=True)


@pytest.mark.parametrize(
    ("typed", "fragment"),
    [
        ("/mute NVDA 9999999999999999999999m", "longer than a year"),
        ("/mute all 99999999999999999999999999999999999999999w", "longer than a year"),
        ("/watch NVDA drop 5% in 99999999999999999999m", "between 1s and 24h"),
        ("/watch NVDA drop 5% in 1" + "0" * 150 + "m", "between 1s and 24h"),
    ],
)
def test_huge_durations_get_one_line(
    sqlite_store: SqlStore, clock: ManualClock, typed: str, fragment: str
) -> None:
    reply = CommandRouter(sqlite_store, clock).handle(typed, CTX)
    assert not reply.ok
    assert fragment in reply.text
    assert "\n" not in reply.text
    assert sqlite_store.list_watches() == []
    assert sqlite_store.active_mutes("slack:C1", clock.now()) == []


class BrokenStore(SqlStore):
    """A store whose watch list fails as a bug would (not a CommandError)."""

    def list_watches(self, channel: str | None = None) -> list:  # type: ignore[type-arg]
        raise RuntimeError("boom")


def test_an_unexpected_error_is_answered_and_logged_once(
    tmp_path: object, clock: ManualClock, caplog: pytest.LogCaptureFixture
) -> None:
    store = BrokenStore(f"sqlite:///{tmp_path}/broken.db")
    store.upgrade()
    try:
        with caplog.at_level(logging.ERROR, logger="alerts.commands"):
            reply = CommandRouter(store, clock).handle("/watchlist", CTX)
    finally:
        store.close()
    assert not reply.ok
    assert reply.text == "Something went wrong, it is logged."
    [record] = [r for r in caplog.records if r.name == "alerts.commands"]
    assert record.exc_info is not None
    assert "boom" in str(record.exc_info[1])
