"""A loopback fake of news feed hosts: programmable RSS/Atom routes, validators, faults."""

from __future__ import annotations

import asyncio
import hashlib
from collections import Counter
from dataclasses import dataclass

from aiohttp import web

from bot.fakes.loopback import LoopbackServer


@dataclass
class FeedRoute:
    """What one path answers. ``etag``/``last_modified`` None: computed from the body / absent."""

    body: bytes
    content_type: str = "application/rss+xml; charset=utf-8"
    status: int = 200
    etag: str | None = None
    last_modified: str | None = None
    delay: float = 0.0  # seconds (wall time) before answering: a stalled host
    chunked: bool = False  # no Content-Length: the client learns the size only by reading
    honour_validators: bool = True  # False: always 200, as some hosts do


class FakeNewsServer(LoopbackServer):
    """Serve feeds the test writes at ``http://127.0.0.1:PORT/PATH``; count every request."""

    def __init__(self) -> None:
        super().__init__()
        self.feeds: dict[str, FeedRoute] = {}
        self.counts: Counter[str] = Counter()
        self.not_modified: Counter[str] = Counter()
        self.conditional: Counter[str] = Counter()  # requests that carried a validator

    def serve(self, path: str, route: FeedRoute) -> str:
        self.feeds[path] = route
        return self.url(path)

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.port}{path}"

    def routes(self, app: web.Application) -> None:
        app.router.add_get("/{tail:.*}", self._answer)

    async def _answer(self, request: web.Request) -> web.StreamResponse:
        path = request.path
        self.counts[path] += 1
        route = self.feeds.get(path)
        if route is None:
            return web.Response(status=404, text="no such feed")
        if route.delay:
            await asyncio.sleep(route.delay)
        etag = route.etag or '"' + hashlib.sha1(route.body).hexdigest()[:16] + '"'
        headers = {"ETag": etag}
        if route.last_modified:
            headers["Last-Modified"] = route.last_modified
        asked_etag = request.headers.get("If-None-Match")
        asked_since = request.headers.get("If-Modified-Since")
        if asked_etag or asked_since:
            self.conditional[path] += 1
        matches = (asked_etag and asked_etag == etag) or (
            asked_since and route.last_modified and asked_since == route.last_modified
        )
        if route.honour_validators and route.status == 200 and matches:
            self.not_modified[path] += 1
            return web.Response(status=304, headers=headers)
        if not route.chunked:
            return web.Response(
                status=route.status,
                body=route.body,
                headers={**headers, "Content-Type": route.content_type},
            )
        response = web.StreamResponse(
            status=route.status, headers={**headers, "Content-Type": route.content_type}
        )
        response.enable_chunked_encoding()
        await response.prepare(request)
        for i in range(0, len(route.body), 64 * 1024):
            await response.write(route.body[i : i + 64 * 1024])
        await response.write_eof()
        return response
