"""Loopback fakes on an event loop of their own, in a daemon thread.

For a client in another process (`marketbot run` under test) or another event loop (a
benchmark that must not share its loop with the servers it measures).
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable
from typing import Self, TypeVar

from bot.fakes.loopback import LoopbackServer

T = TypeVar("T")


class FakesInThread:
    """``with FakesInThread(slack, discord) as fakes:`` serves them until the block ends."""

    def __init__(self, *servers: LoopbackServer) -> None:
        self.servers = servers
        self.loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self.loop.run_forever, name="fakes", daemon=True)

    def __enter__(self) -> Self:
        self._thread.start()
        for server in self.servers:
            asyncio.run_coroutine_threadsafe(server.start(), self.loop).result(timeout=10)
        return self

    def __exit__(self, *exc: object) -> None:
        for server in self.servers:
            asyncio.run_coroutine_threadsafe(server.close(), self.loop).result(timeout=10)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self._thread.join(timeout=10)
        self.loop.close()

    def call(self, read: Callable[[], T]) -> T:
        """Run ``read`` on the fakes' loop (their state is only safe to touch there)."""

        async def run() -> T:
            return read()

        return asyncio.run_coroutine_threadsafe(run(), self.loop).result(timeout=10)

    async def read(self, read: Callable[[], T]) -> T:
        """``read`` on the fakes' loop, awaited: the caller's loop goes on meanwhile.

        (``call`` would block the caller's loop until the fakes' thread answers, which on a
        loaded machine holds up the very sends a benchmark is timing.)
        """

        async def run() -> T:
            return read()

        return await asyncio.wrap_future(asyncio.run_coroutine_threadsafe(run(), self.loop))
