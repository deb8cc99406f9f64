"""The leader and `marketbot worker`s against one bot token: Discord's global budget is shared.

Discord allows 50 requests a second per bot token, whatever the number of processes sending
with it. Each delivering process (every worker, and the leading `marketbot run`) counts the
live ones (their listener connections, in ``pg_stat_activity``) and keeps to its equal part.
A real ``bot.runner.Runtime`` and real ``bot.worker.Worker``s, each in its own thread with its
own event loop, Discord client and connections, send through the loopback Discord, which
counts the requests of every process together.
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Awaitable, Callable, Sequence
from datetime import UTC, datetime
from typing import Protocol

import pytest

from alerts.compose import compose_message
from alerts.ports import ChatPlatform
from bot.discord.platform import DiscordPlatform
from bot.fakes.discord_server import FakeDiscord, RecordedRequest
from bot.fakes.outbox_load import _alert as load_alert
from bot.fakes.threaded import FakesInThread
from bot.fakes.yahoo_server import FakeYahoo
from bot.pg_wake import OutboxListener, application_name, count_by_platform
from bot.runner import Runtime
from bot.settings import Settings
from bot.store import SqlStore
from bot.worker import Worker

PROCESSES = 3  # the leader and two workers
SENDS_PER_PROCESS = 60  # well past one second's budget, so a process at full budget shows


def test_delivering_processes_are_counted_per_platform_from_their_application_names() -> None:
    names = [
        application_name(["discord", "slack"]),
        application_name(["discord"]),
        application_name(["slack"]),
        "marketbot-listener",  # an older listener, or anything else: not counted
        "psql",
    ]
    assert names[0] == "marketbot-delivery discord slack"
    assert count_by_platform(names) == {"discord": 2, "slack": 2}


def most_in_any_window(requests: Sequence[RecordedRequest], seconds: float) -> int:
    times = sorted(r.at for r in requests)
    most, start = 0, 0
    for end, at in enumerate(times):
        while times[start] <= at - seconds:
            start += 1
        most = max(most, end - start + 1)
    return most


class Delivering(Protocol):
    """What the test needs of a delivering process: a worker or a leading `marketbot run`."""

    listener: OutboxListener | None
    platforms: list[ChatPlatform]


async def _started_leader(settings: Settings) -> tuple[Delivering, Callable[[], Awaitable[None]]]:
    runtime = Runtime(settings)
    await runtime.start()
    return runtime, runtime.stop


async def _started_worker(
    settings: Settings, index: int
) -> tuple[Delivering, Callable[[], Awaitable[None]]]:
    worker = Worker(settings, owner=f"worker-{index}")
    try:
        await worker.connect()
        worker.begin()
    except BaseException:
        await worker.stop()
        raise
    return worker, worker.stop


@pytest.mark.postgres
@pytest.mark.usefixtures("discord_endpoints")
def test_the_leader_and_two_workers_share_discords_global_budget(
    postgres_store: SqlStore, fake_yahoo: FakeYahoo
) -> None:
    """The leading `marketbot run` sends to Discord too: it is counted with the workers, so
    the three together keep to 50 a second (each 16), none refused."""
    fake = FakeDiscord(enforce_limits=True)
    with FakesInThread(fake) as fakes:
        settings = Settings.model_validate(
            {
                "database_url": postgres_store.url,
                "console": False,
                "yahoo": {"base_url": fake_yahoo.base_url, "stream_enabled": False},
                "alerts": {"context_symbols": [], "charts": False},
                "news": {"enabled": False},
                "discord": {
                    "token": fake.token,
                    "api_url": fake.rest_base,
                    "gateway_url": fake.gateway_url,
                },
            }
        )
        counted = threading.Barrier(PROCESSES)
        peers_after: list[dict[str, int]] = []
        limits: dict[int, int] = {}
        errors: list[BaseException] = []

        async def run_one(index: int) -> None:
            process, stop = await (
                _started_leader(settings) if index == 0 else _started_worker(settings, index)
            )
            try:
                async with asyncio.timeout(30):
                    # A poll: the listener's thread sets the count, it signals nothing.
                    while (  # noqa: ASYNC110
                        process.listener is None
                        or process.listener.peers.get("discord") != PROCESSES
                    ):
                        await asyncio.sleep(0.05)
                await asyncio.to_thread(counted.wait, 30)  # all sure of 3 before any send
                [platform] = [p for p in process.platforms if isinstance(p, DiscordPlatform)]
                limits[index] = platform._global.limit
                now = datetime.now(UTC)
                await asyncio.gather(
                    *(
                        platform.send(
                            compose_message(channel, [load_alert(channel, index)], now=now),
                            idempotency_key=f"mb-{index}-{n}",
                        )
                        # A channel per message: Discord's per-channel buckets stay out of it.
                        for n in range(SENDS_PER_PROCESS)
                        for channel in [f"discord:{1000 * (index + 1) + n}"]
                    )
                )
                if index == 0:  # the workers stop: they leave the count, the leader stays
                    async with asyncio.timeout(15):
                        while process.listener.peers.get("discord") != 1:  # noqa: ASYNC110
                            await asyncio.sleep(0.05)
                    peers_after.append(dict(process.listener.peers))
                    limits[-1] = platform._global.limit
            finally:
                await stop()

        def thread_main(index: int) -> None:
            try:
                asyncio.run(run_one(index))
            except BaseException as exc:  # reported below; a thread would swallow it
                errors.append(exc)
                counted.abort()

        threads = [threading.Thread(target=thread_main, args=(i,)) for i in range(PROCESSES)]
        began = time.monotonic()
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(timeout=120)
        assert not errors, errors
        assert time.monotonic() - began < 120
        posts = fakes.call(lambda: [r for r in fake.requests if r.method == "POST"])
        refused = fakes.call(lambda: list(fake.limited))

    assert limits == {0: 16, 1: 16, 2: 16, -1: 50}  # 50 // 3 each; alone again, all of it
    assert len(posts) == PROCESSES * SENDS_PER_PROCESS  # every message, none refused, retried
    assert refused == []  # never over Discord's 50 a second, all processes together
    assert most_in_any_window(posts, 1.0) <= 50
    assert peers_after == [{"discord": 1}]
