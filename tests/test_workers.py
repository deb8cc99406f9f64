"""`marketbot worker` on PostgreSQL: workers share the outbox, nothing twice, channels in order.

The drain runs real ``bot.worker.Worker``s, each in its own thread with its own event loop and
connections, as separate processes would, over the issue's 10,000 rows (30 channels).
``MARKETBOT_TEST_OUTBOX_ROWS`` sets another row count (a quick local run: 150).
"""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import threading
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from sqlalchemy import text

from alerts.models import AlertKind, GroupAction, GroupDecision
from bot.fakes.outbox_load import (
    RecordingPlatform,
    drain,
    fill_outbox,
    in_channel_order,
    load_channel,
    load_key,
)
from bot.fakes.outbox_load import _alert as load_alert
from bot.pg_wake import OutboxListener
from bot.settings import Settings
from bot.store import SqlStore
from bot.worker import Worker

ROOT = Path(__file__).resolve().parents[1]
ROWS = int(os.environ.get("MARKETBOT_TEST_OUTBOX_ROWS", "10000"))
CHANNELS = 30
STOP_WITHIN = 8.0  # the worker's stop budget is about 5.5 s; docker stop allows 10 s


def worker_cli(env: dict[str, str], cwd: Path) -> subprocess.CompletedProcess[str]:
    base = {k: v for k, v in os.environ.items() if not k.startswith("MARKETBOT_")}
    return subprocess.run(
        [sys.executable, "-m", "bot.cli", "worker"],
        capture_output=True,
        text=True,
        cwd=cwd,
        env={**base, "PYTHONPATH": str(ROOT), **env},
        timeout=60,
        check=False,
    )


def test_a_worker_on_sqlite_refuses_in_one_line(tmp_path: Path) -> None:
    result = worker_cli({"MARKETBOT_DATABASE_URL": f"sqlite:///{tmp_path / 'x.db'}"}, tmp_path)
    assert result.returncode == 2
    assert result.stderr.count("\n") == 1, result.stderr
    assert "needs PostgreSQL" in result.stderr
    assert not (tmp_path / "x.db").exists()  # refused before touching the database


def test_a_worker_without_a_platform_token_refuses_in_one_line(tmp_path: Path) -> None:
    url = "postgresql+psycopg://nobody@127.0.0.1:9/none"  # never reached: refused first
    result = worker_cli({"MARKETBOT_DATABASE_URL": url}, tmp_path)
    assert result.returncode == 2
    assert result.stderr.count("\n") == 1, result.stderr
    assert "MARKETBOT_SLACK__BOT_TOKEN" in result.stderr


def _settings(store: SqlStore) -> Settings:
    return Settings.model_validate({"database_url": store.url, "console": False})


def _queue_one(store: SqlStore, channel: str, sequence: int) -> None:
    """One alert and its post row, committed the way ingest commits them."""
    alert = load_alert(channel, sequence)
    store.record_evaluation(
        [],
        [alert],
        now=datetime.now(UTC),
        decisions=[
            GroupDecision(
                channel=channel,
                action=GroupAction.NEW,
                alert_keys=(alert.key,),
                not_before=datetime.now(UTC),
            )
        ],
    )


class CountingWaker:
    def __init__(self) -> None:
        self.wakes = 0
        self.woken = threading.Event()

    def wake(self) -> None:
        self.wakes += 1
        self.woken.set()


@pytest.mark.postgres
def test_a_committed_outbox_row_notifies_a_listener_and_a_rolled_back_one_does_not(
    postgres_store: SqlStore,
) -> None:
    waker = CountingWaker()
    listener = OutboxListener(postgres_store.url, waker)
    listener.start()
    try:
        assert listener.listening.wait(10)
        assert waker.woken.wait(5)  # the wake on (re)connect, for rows committed before
        waker.woken.clear()

        with postgres_store.engine.connect() as conn:  # an insert that never commits
            conn.execute(
                text(
                    "INSERT INTO channels (id, platform, created_at, settings, broken_failures)"
                    " VALUES ('slack:CX', 'slack', now(), '{}', 0)"
                )
            )
            conn.execute(
                text(
                    "INSERT INTO alert_groups (id, channel_id, opened_at, updated_at)"
                    " VALUES (999, 'slack:CX', now(), now())"
                )
            )
            conn.execute(
                text(
                    "INSERT INTO outbox (channel_id, group_id, action, status, attempts,"
                    " not_before, created_at) VALUES ('slack:CX', 999, 'post', 'pending', 0,"
                    " now(), now())"
                )
            )
            conn.rollback()
        # Notifications arrive in commit order: had the rollback sent one, it would come
        # before this marker, which a committed transaction of the test's own sends after it.
        with postgres_store.engine.begin() as conn:
            conn.execute(text("SELECT pg_notify('marketbot_outbox', 'after the rollback')"))
        assert waker.woken.wait(5), "the marker did not arrive"
        assert list(listener.payloads) == ["after the rollback"]  # nothing before it

        waker.woken.clear()
        _queue_one(postgres_store, load_channel(1), 0)
        assert waker.woken.wait(5), "no NOTIFY for a committed outbox row"
        assert list(listener.payloads) == ["after the rollback", ""]  # the trigger's
        assert listener.notifications == 2
    finally:
        listener.stop()


@pytest.mark.postgres
async def test_a_worker_delivers_a_row_another_process_committed_without_waiting_for_the_poll(
    postgres_store: SqlStore,
) -> None:
    platform = RecordingPlatform()
    worker = Worker(_settings(postgres_store), platforms=[platform.for_worker("w")], owner="w")
    worker.delivery.poll_interval = 60.0  # only a NOTIFY can wake it within the test
    await worker.start()
    try:
        assert worker.listener is not None
        assert await asyncio.to_thread(worker.listener.listening.wait, 10)
        await worker.delivery.settled()  # the listener's wake on connect has been answered
        other = SqlStore(postgres_store.url)  # another process's connection
        try:
            committed = time.monotonic()
            await asyncio.to_thread(_queue_one, other, load_channel(7), 0)
        finally:
            other.close()
        async with asyncio.timeout(10):
            while not platform.sent:  # noqa: ASYNC110 (sent by the worker's own tasks)
                await asyncio.sleep(0.01)
        assert time.monotonic() - committed < 5.0
        assert platform.sent == [("w", load_channel(7), load_key(load_channel(7), 0))]
    finally:
        await worker.stop()


@pytest.mark.postgres
async def test_a_worker_claims_only_channels_of_its_platforms(postgres_store: SqlStore) -> None:
    """A console row stays for the process that has the console; it is not marked dead."""
    _queue_one(postgres_store, "console:default", 0)
    _queue_one(postgres_store, load_channel(2), 0)
    platform = RecordingPlatform()
    worker = Worker(_settings(postgres_store), platforms=[platform.for_worker("w")], owner="w")
    await worker.connect()
    try:
        await worker.delivery.deliver_due()
    finally:
        await worker.stop()
    assert [channel for _, channel, _ in platform.sent] == [load_channel(2)]
    assert postgres_store.outbox_counts() == {"sent": 1, "pending": 1}


@pytest.mark.postgres
def test_three_workers_drain_the_outbox_none_twice_each_channel_in_order(
    postgres_store: SqlStore,
) -> None:
    per_channel = max(1, ROWS // CHANNELS)
    rows = fill_outbox(postgres_store, channels=CHANNELS, per_channel=per_channel)
    platform = RecordingPlatform()
    report = drain(
        _settings(postgres_store), platform, workers=3, expected=rows, timeout=30 + rows / 5
    )

    keys = [key for _, _, key in platform.sent]
    assert report.rows == rows
    assert len(keys) == len(set(keys)) == rows  # none twice, none lost
    by_channel = platform.keys_by_channel()
    assert len(by_channel) == CHANNELS
    for channel, sent in by_channel.items():
        assert in_channel_order(sent), f"{channel} out of order"
    assert platform.overlaps == 0  # one worker at a time per channel
    assert len({worker for worker, _, _ in platform.sent}) == 3  # they did share the work
    assert postgres_store.outbox_counts() == {"sent": rows}
    assert postgres_store.undelivered_alerts() == []
    assert {a.kind for a in postgres_store.recent_alerts(load_channel(0), 1)} == {AlertKind.FIRING}


@pytest.mark.postgres
def test_a_worker_started_before_its_database_says_so_once_then_drains_when_it_is_up(
    tmp_path: Path,
) -> None:
    """As `marketbot run`: the shared logging (here JSON lines, tokens redacted) and one
    warning for a database not up yet, then quiet backoff, then delivery once it answers."""
    import json
    import uuid

    from sqlalchemy import create_engine
    from sqlalchemy.engine import make_url

    from bot.fakes.slack_server import FakeSlack
    from bot.fakes.threaded import FakesInThread

    configured = os.environ.get("MARKETBOT_TEST_POSTGRES_URL")
    if not configured:
        pytest.skip("MARKETBOT_TEST_POSTGRES_URL is not set: no PostgreSQL to test against")
    admin_url = make_url(configured)
    name = f"marketbot_test_{uuid.uuid4().hex[:12]}"  # does not exist yet: "unreachable"
    url = admin_url.set(database=name).render_as_string(hide_password=False)
    admin = create_engine(admin_url, isolation_level="AUTOCOMMIT")
    slack = FakeSlack()
    base = {k: v for k, v in os.environ.items() if not k.startswith("MARKETBOT_")}
    env = {
        **base,
        "PYTHONPATH": str(ROOT),
        "MARKETBOT_DATABASE_URL": url,
        "MARKETBOT_LOG_FORMAT": "json",
        "MARKETBOT_LOG_LEVEL": "DEBUG",  # each retry of the wait is a debug line
        "MARKETBOT_SLACK__BOT_TOKEN": slack.bot_token,
        "MARKETBOT_SLACK__API_URL": "",  # set once the fake listens
    }
    with FakesInThread(slack) as fakes:
        env["MARKETBOT_SLACK__API_URL"] = slack.api_url
        proc = subprocess.Popen(
            [sys.executable, "-m", "bot.cli", "worker"],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
            cwd=tmp_path,
            env=env,
        )
        lines: list[str] = []
        reader = threading.Thread(
            target=lambda: lines.extend(iter(proc.stderr.readline, "")),  # type: ignore[union-attr]
            daemon=True,
        )
        reader.start()
        try:
            deadline = time.monotonic() + 60
            while not any("database unreachable" in line for line in lines):
                assert proc.poll() is None, "".join(lines)
                assert time.monotonic() < deadline, "".join(lines)
                time.sleep(0.1)
            while sum("still unreachable" in line for line in lines) < 2:  # two more tries
                assert proc.poll() is None, "".join(lines)
                assert time.monotonic() < deadline, "".join(lines)
                time.sleep(0.1)
            assert proc.poll() is None
            records = [json.loads(line) for line in lines if "unreachable" in line]
            warned = [r for r in records if r["level"] == "WARNING"]
            assert len(warned) == 1, lines  # one line, however many tries
            assert "database unreachable" in warned[0]["message"]
            assert "retrying with backoff" in warned[0]["message"]

            with admin.connect() as conn:
                conn.execute(text(f'CREATE DATABASE "{name}"'))
            store = SqlStore(url)
            try:
                store.upgrade()
                _queue_one(store, "slack:C0WAITED", 0)
                deadline = time.monotonic() + 60
                while not fakes.call(lambda: slack.calls("chat.postMessage")):
                    assert proc.poll() is None, "".join(lines)
                    assert time.monotonic() < deadline, "no delivery: " + "".join(lines)
                    time.sleep(0.1)
                [post] = fakes.call(lambda: slack.calls("chat.postMessage"))
                assert post.params["channel"] == "C0WAITED"
                assert any("database reachable" in line for line in lines)
                assert all(json.loads(line) for line in lines if line.strip())  # JSON lines
                assert not any(slack.bot_token in line for line in lines)
            finally:
                store.close()
        finally:
            proc.terminate()
            proc.wait(timeout=20)
            reader.join(timeout=5)
            if proc.stderr is not None:
                proc.stderr.close()
            with admin.connect() as conn:
                conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
            admin.dispose()


@pytest.mark.postgres
def test_sigterm_stops_a_worker_mid_send_within_seconds_and_hands_its_claim_on(
    postgres_store: SqlStore, tmp_path: Path
) -> None:
    """A `marketbot worker` subprocess with a post in flight to a Slack that stopped
    answering: SIGTERM ends it in a bounded time, exit 0, and the row it held is not handed
    back as pending (the stalled request may have reached Slack) but its lease ends at once,
    so the next claim, by any worker, reconciles it now rather than in 30 s."""
    from bot.fakes.slack_server import FakeSlack
    from bot.fakes.threaded import FakesInThread

    slack = FakeSlack()
    slack.stall(r"chat\.postMessage")
    _queue_one(postgres_store, "slack:C0STALL", 0)
    base = {k: v for k, v in os.environ.items() if not k.startswith("MARKETBOT_")}
    with FakesInThread(slack) as fakes:
        proc = subprocess.Popen(
            [sys.executable, "-m", "bot.cli", "worker"],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
            cwd=tmp_path,
            env={
                **base,
                "PYTHONPATH": str(ROOT),
                "MARKETBOT_DATABASE_URL": postgres_store.url,
                "MARKETBOT_SLACK__BOT_TOKEN": slack.bot_token,
                "MARKETBOT_SLACK__API_URL": slack.api_url,
            },
        )
        try:
            deadline = time.monotonic() + 60
            while not fakes.call(lambda: list(slack.stalled)):  # the post is in flight
                assert proc.poll() is None, proc.stderr.read() if proc.stderr else ""
                assert time.monotonic() < deadline, "no post reached the fake Slack"
                time.sleep(0.05)
            signalled = time.monotonic()
            proc.send_signal(signal.SIGTERM)
            _, stderr = proc.communicate(timeout=30)
            elapsed = time.monotonic() - signalled
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
    print(f"worker exit {elapsed:.2f} s after SIGTERM")
    assert proc.returncode == 0, stderr[-3000:]
    assert elapsed <= STOP_WITHIN, (elapsed, stderr[-3000:])
    assert "1 claimed outbox row(s) left to the other workers" in stderr, stderr[-3000:]
    assert postgres_store.outbox_counts() == {"sending": 1}  # not pending: never sent blind
    [claimed] = postgres_store.claim("next", datetime.now(UTC), timedelta(seconds=30), limit=5)
    assert claimed.channel == "slack:C0STALL"
    assert claimed.reconcile  # looked up on Slack (after the in-flight grace) before a resend
    assert claimed.lapsed_at is not None
    assert (datetime.now(UTC) - claimed.lapsed_at).total_seconds() < 60  # ended at the stop
