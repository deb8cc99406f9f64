"""The part every aiohttp-based fake shares: serve on 127.0.0.1, close its websockets, stop."""

from __future__ import annotations

import asyncio
import contextlib
import re
from collections.abc import Callable
from typing import Self

from aiohttp import web


class LoopbackServer:
    """Subclasses add their routes in ``routes``; ``async with`` starts and stops the server."""

    def __init__(self) -> None:
        self.port = 0
        self._runner: web.AppRunner | None = None
        self._sockets: list[web.WebSocketResponse] = []
        self._stalls: list[re.Pattern[str]] = []
        self._released = asyncio.Event()
        self._stalled_changed = asyncio.Event()
        self.stalled: list[str] = []  # keys of the requests held unanswered right now

    def routes(self, app: web.Application) -> None:
        raise NotImplementedError

    async def start(self, port: int = 0) -> None:
        app = web.Application()
        self.routes(app)
        self._runner = web.AppRunner(app)
        await self._runner.setup()
        await web.TCPSite(self._runner, "127.0.0.1", port).start()
        self.port = int(self._runner.addresses[0][1])

    async def close(self) -> None:
        self.release()  # a held request would keep the runner's cleanup waiting for it
        for ws in list(self._sockets):
            await ws.close()
        if self._runner is not None:
            await self._runner.cleanup()

    # ----------------------------------------------------------------- stalls
    def stall(self, pattern: str) -> None:
        """Requests whose key fully matches ``pattern`` get no answer until :meth:`release`.

        A server that went quiet mid-request: the client's call is in flight, as a delivery is
        when an operator stops the bot. Keys are the fake's own (Slack: the Web API method,
        ``chat.postMessage``; Discord: method and path, ``POST /channels/1/messages``).
        """
        self._stalls.append(re.compile(pattern))
        self._released.clear()

    def release(self) -> None:
        """Answer every held request and stop holding new ones."""
        self._stalls.clear()
        self._released.set()

    async def wait_stalled(self, count: int, within: float = 5.0) -> list[str]:
        """Wait until ``count`` requests are held at once; returns their keys."""
        async with asyncio.timeout(within):
            while len(self.stalled) < count:
                self._stalled_changed.clear()
                await self._stalled_changed.wait()
        return list(self.stalled)

    async def _hold_if_stalled(self, key: str) -> None:
        if not any(pattern.fullmatch(key) for pattern in self._stalls):
            return
        self.stalled.append(key)
        self._stalled_changed.set()
        try:
            await self._released.wait()
        finally:
            self.stalled.remove(key)

    async def __aenter__(self) -> Self:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()


def serve_standalone(server: LoopbackServer, port: int, announce: Callable[[], str]) -> None:
    """Serve ``server`` on 127.0.0.1:``port`` until Ctrl-C; ``announce()`` is printed once it
    listens (it may read the port), so a person or a script knows where it is."""

    async def serve() -> None:
        await server.start(port)
        print(announce(), flush=True)
        try:
            await asyncio.Event().wait()
        finally:
            await server.close()

    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(serve())
