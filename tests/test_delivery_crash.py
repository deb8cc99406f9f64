"""`kill -9` during an alert storm, restarted each time: every alert exactly once, in order.

A subprocess `marketbot run` posts to the loopback Slack and Discord (25 channels each, 20
watched names per channel: 1,000 alerts in five waves). It is killed at random moments and,
half of the time, exactly between the platform accepting a message and the bot recording it
(the fake kills it before answering). After the last restart drains the outbox, each alert is
in exactly one message of its channel and each channel's messages came in wave order.
"""

from __future__ import annotations

import functools
import json
import os
import random
import signal
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from bot.fakes.discord_server import FakeDiscord
from bot.fakes.slack_server import FakeSlack
from bot.fakes.threaded import FakesInThread
from bot.fakes.yahoo_server import FakeYahoo
from bot.store import SqlStore
from tests.test_run_processes import RunProcess, Ticker, run_env

CHANNELS_PER_PLATFORM = 25
# Coins ("-USD"): they trade around the clock, so the run has an open market whatever the wall
# clock says (a US share idles from 20:00 to 04:00 New York time and at weekends).
NAMES = [f"S{n:02d}-USD" for n in range(20)]
WAVES = [NAMES[i : i + 2] for i in range(0, len(NAMES), 2)]
KILLS = 16
# A hard cap. Each restart pays the interpreter's start (~3 s of CPU for the imports), so the
# random kills do not wait for a full start: some land in start-up, some in delivery.
BUDGET_SECONDS = float(os.environ.get("MARKETBOT_TEST_CRASH_BUDGET", "300"))


def _slack_ids() -> list[str]:
    return [f"C{n:04d}" for n in range(CHANNELS_PER_PLATFORM)]


def _discord_ids() -> list[str]:
    return [str(910000000000000000 + n) for n in range(CHANNELS_PER_PLATFORM)]


@pytest.fixture
def fakes() -> Iterator[tuple[FakeSlack, FakeDiscord, FakesInThread]]:
    slack, discord_fake = FakeSlack(), FakeDiscord()
    with FakesInThread(slack, discord_fake) as running:
        yield slack, discord_fake, running


def _messages(slack: FakeSlack, discord_fake: FakeDiscord) -> dict[str, list[str]]:
    """Each channel's messages, in the order they were created, as their final text."""
    out: dict[str, list[str]] = {}
    for (channel, _ts), posted in sorted(slack.messages.items(), key=lambda kv: kv[0][1]):
        out.setdefault(f"slack:{channel}", []).append(json.dumps(posted.blocks or posted.text))
    for message in sorted(discord_fake.messages.values(), key=lambda m: int(m["id"])):
        out.setdefault(f"discord:{message['channel_id']}", []).append(json.dumps(message["embeds"]))
    return out


def _storm_survives_kills(
    tmp_path: Path,
    store: SqlStore,
    yahoo: FakeYahoo,
    fakes: tuple[FakeSlack, FakeDiscord, FakesInThread],
) -> None:
    slack, discord_fake, running = fakes
    rng = random.Random(8)
    now = datetime.now(UTC)
    channels = [f"slack:{c}" for c in _slack_ids()] + [f"discord:{c}" for c in _discord_ids()]
    for channel in channels:
        for name in NAMES:
            store.add_watch(channel, name, "drop 5%", now=now)
    for name in NAMES:
        yahoo.set_closes(name, [(now.date() - timedelta(days=1), 100.0)])
    env = {
        **run_env(store.url, yahoo, tmp_path / "cache"),
        "MARKETBOT_CONSOLE": "false",
        "MARKETBOT_SLACK__BOT_TOKEN": slack.bot_token,
        "MARKETBOT_SLACK__APP_TOKEN": slack.app_token,
        "MARKETBOT_SLACK__API_URL": slack.api_url,
        "MARKETBOT_DISCORD__TOKEN": discord_fake.token,
        "MARKETBOT_DISCORD__API_URL": discord_fake.rest_base,
        "MARKETBOT_DISCORD__GATEWAY_URL": discord_fake.gateway_url,
        "MARKETBOT_DELIVERY__LEASE_SECONDS": "2",
    }
    started = time.monotonic()
    with Ticker(yahoo) as ticker:
        for name in NAMES:
            ticker.set(name, 100.0)
        waves = iter(WAVES)
        for kill_number in range(KILLS):
            process = RunProcess(env, tmp_path)
            try:
                if kill_number % 2 == 0:
                    _kill_between_accept_and_confirm(
                        process, kill_number, next(waves, None), ticker, fakes
                    )
                else:
                    time.sleep(rng.uniform(0.5, 4.0))  # start-up, catching up, or idle
                    process.proc.send_signal(signal.SIGKILL)
                process.proc.wait(timeout=10)
            finally:
                process.stop()
                _keep_log(process, f"run-{kill_number:02d}")
            assert time.monotonic() - started < BUDGET_SECONDS
        for wave in waves:  # any wave not yet sent goes out under the last run
            for name in wave:
                ticker.set(name, 90.0)
        final = RunProcess(env, tmp_path)
        try:

            def drained() -> bool:
                counts = store.outbox_counts()
                return (
                    sum(counts.values()) > 0
                    and not counts.get("pending")
                    and not counts.get("sending")
                    and len(store.list_watches()) == len(channels) * len(NAMES)
                    and _firing_count(store) == len(channels) * len(NAMES)
                    and not store.undelivered_alerts()
                )

            try:
                # The drain is timed from the start: on a loaded machine the interpreter's
                # imports and the start-up alone took 20-46 s of the 90.
                final.wait_for(lambda: final.said("marketbot started", stream="err"), 120, "start")
                final.wait_for(drained, 90, "the outbox to drain")
            except AssertionError:
                raise AssertionError(
                    f"not drained: outbox {store.outbox_counts()}, "
                    f"{_firing_count(store)} firing alerts, "
                    f"{len(store.undelivered_alerts())} undelivered"
                    f"{_diagnosis(store, final)}{final.log}"
                ) from None
        finally:
            final.stop()
            _keep_log(final, "run-final")

    messages = running.call(lambda: _messages(slack, discord_fake))
    assert set(messages) == set(channels)
    for channel in channels:
        # The crossings' messages (a restart may also post a data notice naming symbols).
        moves = [text for text in messages[channel] if "10.0%" in text]
        shown = Counter(name for text in moves for name in NAMES if name in text)
        assert shown == Counter(dict.fromkeys(NAMES, 1)), (
            channel,
            shown,
            moves,
            _diagnosis(store, None, channel),
            running.call(functools.partial(_slack_posts, slack, channel)),
        )
        # Per-channel order: a message never shows an earlier wave than the one before it.
        wave_of = {name: i for i, wave in enumerate(WAVES) for name in wave}
        firsts = [min(wave_of[name] for name in NAMES if name in text) for text in moves]
        assert firsts == sorted(firsts), (channel, firsts)
    assert store.outbox_counts().get("dead", 0) == 0


def _kill_between_accept_and_confirm(
    process: RunProcess,
    kill_number: int,
    wave: list[str] | None,
    ticker: Ticker,
    fakes: tuple[FakeSlack, FakeDiscord, FakesInThread],
) -> None:
    """Once started, a wave falls; the next message a platform accepts kills the bot."""
    slack, discord_fake, running = fakes
    process.wait_for(lambda: process.said("marketbot started", stream="err"), 120, "start")
    target: FakeSlack | FakeDiscord = slack if kill_number % 4 == 0 else discord_fake
    pid = process.proc.pid

    def kill() -> None:
        target.after_accept = None
        os.kill(pid, signal.SIGKILL)

    running.call(lambda: setattr(target, "after_accept", kill))
    for name in wave or ():
        ticker.set(name, 90.0)  # -10%: every channel's watch of it fires
    try:
        process.proc.wait(timeout=5)
    except subprocess.TimeoutExpired:  # nothing left to send: kill it anyway
        process.proc.send_signal(signal.SIGKILL)
    finally:
        running.call(lambda: setattr(target, "after_accept", None))


def _diagnosis(store: SqlStore, process: RunProcess | None, channel: str | None = None) -> str:
    """The open outbox rows (or one channel's rows), paused lanes, and the process's stacks."""
    from sqlalchemy import or_, select

    from bot.store.schema import ChannelRow, OutboxRow

    lines = [f"\n--- diagnosis at {datetime.now(UTC).isoformat()}"]
    with store.engine.connect() as conn:
        query = select(OutboxRow).order_by(OutboxRow.id)
        if channel is None:
            query = query.where(OutboxRow.status.in_(("pending", "sending")))
        else:
            query = query.where(OutboxRow.channel_id == channel)
        for row in conn.execute(query).mappings():
            lines.append(
                f"outbox {row['id']} {row['channel_id']} g{row['group_id']} {row['action']} "
                f"{row['status']} att={row['attempts']} nb={row['not_before']} "
                f"owner={row['lease_owner']} exp={row['lease_expires_at']} "
                f"sent={row['sent_at']} msg={row['message_id']} err={row['last_error']}"
            )
        for lane in conn.execute(
            select(ChannelRow.id, ChannelRow.deliver_after, ChannelRow.broken_since).where(
                or_(ChannelRow.deliver_after.is_not(None), ChannelRow.broken_since.is_not(None))
            )
        ):
            lines.append(f"channel {lane[0]} deliver_after={lane[1]} broken={lane[2]}")
        if store.engine.dialect.name == "postgresql":
            from sqlalchemy import text

            for activity in conn.execute(
                text(
                    "SELECT pid, application_name, state, wait_event_type, wait_event,"
                    " pg_blocking_pids(pid), now() - xact_start, left(query, 160)"
                    " FROM pg_stat_activity WHERE datname = current_database()"
                )
            ):
                lines.append(f"pg {tuple(activity)}")
    if process is not None and process.proc.poll() is None:
        import shutil

        spy = shutil.which("py-spy") or str(Path(sys.executable).with_name("py-spy"))
        if Path(spy).exists():
            dumped = subprocess.run(
                [spy, "dump", "--pid", str(process.proc.pid)],
                capture_output=True,
                text=True,
                timeout=60,
            )
            lines.append(dumped.stdout[-12000:] + dumped.stderr[-2000:])
    return "\n".join(lines)


def _keep_log(process: RunProcess, name: str) -> None:
    """With MARKETBOT_TEST_CRASH_LOGS set (a directory): each run's whole output, to read."""
    where = os.environ.get("MARKETBOT_TEST_CRASH_LOGS")
    if where:
        Path(where).mkdir(parents=True, exist_ok=True)
        lines = sorted([*process.out, *process.err])
        (Path(where) / f"{name}.log").write_text("".join(f"{t:.3f} {line}" for t, line in lines))


def _slack_posts(slack: FakeSlack, channel: str) -> list[tuple[str, object, str]]:
    wanted = channel.removeprefix("slack:")
    return [
        (ts, (posted.metadata or {}).get("event_payload"), (posted.text or "")[:80])
        for (ch, ts), posted in sorted(slack.messages.items(), key=lambda kv: kv[0][1])
        if ch == wanted
    ]


def _firing_count(store: SqlStore) -> int:
    from sqlalchemy import func, select

    from bot.store.schema import AlertRow

    with store.engine.connect() as conn:
        query = select(func.count()).select_from(AlertRow).where(AlertRow.kind == "firing")
        return int(conn.execute(query).scalar_one())


def test_kill_9_during_a_storm_on_sqlite(
    tmp_path: Path,
    fake_yahoo: FakeYahoo,
    fakes: tuple[FakeSlack, FakeDiscord, FakesInThread],
) -> None:
    store = SqlStore(f"sqlite:///{tmp_path / 'crash.db'}")
    store.upgrade()
    try:
        _storm_survives_kills(tmp_path, store, fake_yahoo, fakes)
    finally:
        store.close()


@pytest.mark.postgres
def test_kill_9_during_a_storm_on_postgresql(
    tmp_path: Path,
    fake_yahoo: FakeYahoo,
    postgres_store: SqlStore,
    fakes: tuple[FakeSlack, FakeDiscord, FakesInThread],
) -> None:
    _storm_survives_kills(tmp_path, postgres_store, fake_yahoo, fakes)
