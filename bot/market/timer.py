"""Injectable waiting for the market-data loops: real ``asyncio.sleep`` or virtual time."""

from __future__ import annotations

import asyncio
import heapq
import itertools
from collections.abc import Awaitable, Callable
from datetime import timedelta

from alerts.ports import ManualClock

Sleep = Callable[[float], Awaitable[None]]


async def real_sleep(seconds: float) -> None:
    await asyncio.sleep(max(0.0, seconds))


async def sleep_or_set(event: asyncio.Event, seconds: float, sleep: Sleep = real_sleep) -> bool:
    """Wait ``seconds`` of ``sleep``'s time, cut short by ``event``; True if it was set.

    ``asyncio.wait_for(event.wait(), seconds)`` waits on wall time, so a test could only
    sleep through it; ``sleep`` is the injected one (``VirtualSleeper.sleep`` on a ManualClock).
    """
    if event.is_set():
        return True
    setter = asyncio.ensure_future(event.wait())
    sleeper = asyncio.ensure_future(sleep(seconds))
    try:
        await asyncio.wait({setter, sleeper}, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for waiter in (setter, sleeper):
            waiter.cancel()
        # gather, not `suppress(CancelledError): await waiter`: a cancel of the caller that
        # lands while the waiters are put away must not be swallowed as theirs.
        await asyncio.gather(setter, sleeper, return_exceptions=True)
    return event.is_set()


class VirtualSleeper:
    """Sleeps that end only when a test or simulation moves the ManualClock past them.

    Lets the backoff, silence watchdog and idle logic run hours of market time in
    milliseconds, with every wake-up happening at the exact simulated instant.
    """

    def __init__(self, clock: ManualClock) -> None:
        self.clock = clock
        self._waiters: list[tuple[object, int, asyncio.Future[None]]] = []
        self._seq = itertools.count()
        self._registered = asyncio.Event()
        self.wakeups = 0

    async def sleep(self, seconds: float) -> None:
        due = self.clock.now() + timedelta(seconds=max(0.0, seconds))
        fut: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        heapq.heappush(self._waiters, (due, next(self._seq), fut))
        self._registered.set()
        await fut

    async def wait_pending(self, count: int = 1, limit: float = 5.0) -> None:
        """Wait (real time, bounded) until at least ``count`` sleepers are waiting."""
        async with asyncio.timeout(limit):
            while self.pending < count:
                self._registered.clear()
                await self._registered.wait()

    @property
    def pending(self) -> int:
        return sum(1 for _, _, f in self._waiters if not f.done())

    async def _settle(self, rounds: int) -> None:
        for _ in range(rounds):
            await asyncio.sleep(0)

    async def advance(self, delta: timedelta, *, settle_rounds: int = 20) -> None:
        """Move the clock by ``delta``, waking each sleeper at its own due time, in order."""
        target = self.clock.now() + delta
        await self._settle(settle_rounds)
        while self._waiters and self._waiters[0][0] <= target:  # type: ignore[operator]
            due, _, fut = heapq.heappop(self._waiters)
            if fut.done():
                continue
            if due > self.clock.now():  # type: ignore[operator]
                self.clock.set(due)  # type: ignore[arg-type]
            fut.set_result(None)
            self.wakeups += 1
            await self._settle(settle_rounds)
        if target > self.clock.now():
            self.clock.set(target)
        await self._settle(settle_rounds)
