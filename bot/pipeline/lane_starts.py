"""Lane starts: new delivery lanes take their first step one per event-loop iteration, in order.

A lane's first step renders its message (store reads, composition: a millisecond or two of
CPU) and puts its request on the wire. Lanes started together would all take that step in
the same loop iteration, and the loop reads no socket until the iteration ends: a storm's
batch of 75 lanes held every answer and every connect back for the whole batch. Measured in
the storm benchmark: Discord's first 50 requests were let go within 0.07 s of the commit, their
connections completed at 0.32 s, their answers were read at 0.48-0.55 s, and since Discord's
budget counts from answers, each later second started that late. Started one per iteration,
the loop polls its sockets between two renders.
"""

from __future__ import annotations

import asyncio
from collections import deque


class LaneStarts:
    """``turn = starts.queue()`` when a lane is created, ``await turn`` in it: it returns on a
    loop iteration of its own, in the order the lanes were queued.

    ``drained()`` returns once every lane queued has had its turn: the dispatcher claims its
    next batch then, instead of claiming (a query each) on every iteration meanwhile. Lanes
    are queued as they are created, not when they first run, so a dispatcher that starts a
    batch and then waits finds it still queued.
    """

    def __init__(self) -> None:
        self._waiting: deque[asyncio.Future[None]] = deque()
        self._scheduled = False
        self._drained = asyncio.Event()
        self._drained.set()

    def queue(self) -> asyncio.Future[None]:
        """A turn: awaiting it returns once the lanes queued before have had theirs. A lane
        cancelled while it waits cancels its turn, which is then skipped."""
        loop = asyncio.get_running_loop()
        turn = loop.create_future()
        self._waiting.append(turn)
        self._drained.clear()
        self._schedule(loop)
        return turn

    async def drained(self) -> None:
        await self._drained.wait()

    def _schedule(self, loop: asyncio.AbstractEventLoop) -> None:
        if not self._scheduled:
            self._scheduled = True
            loop.call_soon(self._let_one_through)

    def _let_one_through(self) -> None:
        # The lane let through runs on the next iteration, and so does this callback again
        # (call_soon after the lane's wake-up): one lane's first step per iteration.
        self._scheduled = False
        while self._waiting:
            waiter = self._waiting.popleft()
            if not waiter.done():
                waiter.set_result(None)
                break
        if self._waiting:
            self._schedule(asyncio.get_running_loop())
        else:
            self._drained.set()
