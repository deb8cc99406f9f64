"""Discord's global budget: no window of arrivals exceeds the limit, however late requests leave."""

from __future__ import annotations

import asyncio
import random
import time

from bot.discord.platform import AnsweredWindow

LIMIT = 5
PERIOD = 0.2


async def test_late_leaving_requests_never_bunch_past_the_limit() -> None:
    """Requests that leave a random while after being let go (a busy loop) still arrive at
    most LIMIT to any PERIOD: a limiter counting from when it lets go bunches them."""
    window = AnsweredWindow(LIMIT, PERIOD)
    rng = random.Random(7)
    arrivals: list[float] = []

    async def request() -> None:
        async with window.slot():
            await asyncio.sleep(rng.uniform(0.0, 1.5 * PERIOD))  # leaves late
            arrivals.append(time.monotonic())  # the platform sees it
            await asyncio.sleep(rng.uniform(0.0, 0.05))  # and answers

    await asyncio.gather(*(request() for _ in range(40)))
    arrivals.sort()
    assert len(arrivals) == 40
    for i, first in enumerate(arrivals):
        within = [t for t in arrivals[i:] if t - first < PERIOD]
        assert len(within) <= LIMIT, (i, len(within))


async def test_a_place_frees_a_period_after_the_answer() -> None:
    window = AnsweredWindow(2, PERIOD)
    answered: list[float] = []
    granted: list[float] = []

    async def request() -> None:
        async with window.slot():
            granted.append(time.monotonic())
        answered.append(time.monotonic())

    await asyncio.gather(*(request() for _ in range(4)))
    # The third and fourth went only once the first two answers were a period old.
    assert granted[2] - answered[0] >= PERIOD
    assert granted[3] - answered[1] >= PERIOD


async def test_waiters_are_served_in_order() -> None:
    window = AnsweredWindow(1, 0.01)
    order: list[int] = []

    async def request(n: int) -> None:
        async with window.slot():
            order.append(n)

    tasks = []
    for n in range(6):
        tasks.append(asyncio.create_task(request(n)))
        await asyncio.sleep(0)  # each queues before the next
    await asyncio.gather(*tasks)
    assert order == list(range(6))


async def test_places_that_free_together_go_out_together() -> None:
    """Places freed at once are all handed on in one loop iteration: passing them on one
    waiter at a time cost an iteration each, and on a busy loop (a storm's renders) 50
    requests then spread over a second."""
    window = AnsweredWindow(LIMIT, PERIOD)
    ticks = 0
    granted_at: list[int] = []

    async def ticker() -> None:
        nonlocal ticks
        while True:
            ticks += 1
            await asyncio.sleep(0)

    async def request() -> None:
        async with window.slot():
            granted_at.append(ticks)

    counting = asyncio.create_task(ticker())
    try:
        await asyncio.gather(*(request() for _ in range(2 * LIMIT)))
    finally:
        counting.cancel()
    second = granted_at[LIMIT:]
    assert len(second) == LIMIT
    assert max(second) - min(second) <= 1, granted_at
