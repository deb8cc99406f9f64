"""Several `marketbot worker`s against one bot token: Discord's global budget is shared.

Discord allows 50 requests a second per bot token, whatever the number of processes sending
with it. Each worker counts the live delivering processes (their listener connections, in
``pg_stat_activity``) and keeps to its equal part. Real ``bot.worker.Worker``s, each in its own
thread with its own event loop, Discord client and connections, send through the loopback
Discord, which counts the requests of every worker together.
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Sequence
from datetime import UTC, datetime

import pytest

from alerts.compose import compose_message
from bot.fakes.discord_server import FakeDiscord, RecordedRequest
from bot.fakes.outbox_load import _alert as load_alert
from bot.fakes.threaded import FakesInThread
from bot.pg_wake import application_name, count_by_platform
from bot.settings import Settings
from bot.store import SqlStore
from bot.worker import Worker

WORKERS = 3
SENDS_PER_WORKER = 60  # well past one second's budget, so a worker at full budget shows


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


@pytest.mark.postgres
def test_three_workers_share_discords_global_budget(postgres_store: SqlStore) -> None:
    fake = FakeDiscord(enforce_limits=True)
    with FakesInThread(fake) as fakes:
        settings = Settings.model_validate(
            {
                "database_url": postgres_store.url,
                "console": False,
                "discord": {
                    "token": fake.token,
                    "api_url": fake.rest_base,
                    "gateway_url": fake.gateway_url,
                },
            }
        )
        counted = threading.Barrier(WORKERS)
        peers_after: list[dict[str, int]] = []
        errors: list[BaseException] = []

        async def run_one(index: int) -> None:
            worker = Worker(settings, owner=f"worker-{index}")
            try:
                await worker.connect()
                worker.begin()
                assert worker.listener is not None
                async with asyncio.timeout(30):
                    # A poll: the count is set by the listener's thread.
                    while worker.listener.peers.get("discord") != WORKERS:  # noqa: ASYNC110
                        await asyncio.sleep(0.05)
                await asyncio.to_thread(counted.wait, 30)  # all sure of 3 before any send
                platform = worker.platforms[0]
                now = datetime.now(UTC)
                await asyncio.gather(
                    *(
                        platform.send(
                            compose_message(channel, [load_alert(channel, index)], now=now),
                            idempotency_key=f"mb-{index}-{n}",
                        )
                        # A channel per message: Discord's per-channel buckets stay out of it.
                        for n in range(SENDS_PER_WORKER)
                        for channel in [f"discord:{1000 * (index + 1) + n}"]
                    )
                )
                if index == 0:  # the others stop: they leave the count
                    async with asyncio.timeout(15):
                        while worker.listener.peers.get("discord") != 1:  # noqa: ASYNC110
                            await asyncio.sleep(0.05)
                    peers_after.append(dict(worker.listener.peers))
            finally:
                await worker.stop()

        def thread_main(index: int) -> None:
            try:
                asyncio.run(run_one(index))
            except BaseException as exc:  # reported below; a thread would swallow it
                errors.append(exc)
                counted.abort()

        threads = [threading.Thread(target=thread_main, args=(i,)) for i in range(WORKERS)]
        began = time.monotonic()
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(timeout=120)
        assert not errors, errors
        assert time.monotonic() - began < 120
        posts = fakes.call(lambda: [r for r in fake.requests if r.method == "POST"])
        refused = fakes.call(lambda: list(fake.limited))

    assert len(posts) == WORKERS * SENDS_PER_WORKER  # every message, none refused and retried
    assert refused == []  # never over Discord's 50 a second, all workers together
    assert most_in_any_window(posts, 1.0) <= 50
    assert peers_after == [{"discord": 1}]
