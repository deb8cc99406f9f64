"""A loopback Slack: Web API methods, response_url, Socket Mode websocket; records every request.

Driven by the real slack_sdk/slack_bolt (point ``base_url`` at ``FakeSlack.api_url``), it lets
tests, demos and benchmarks run a Slack workspace without a network. Failures are programmable
(429 with Retry-After, 5xx) and every request can be checked against Slack's published OpenAPI.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl

from aiohttp import WSMsgType, web

from bot.fakes.loopback import LoopbackServer, serve_standalone


@dataclass
class RecordedRequest:
    """One HTTP request the fake received, with its parameters merged from query, form and JSON."""

    http_method: str
    path: str
    api_method: str | None  # "chat.postMessage" for /api/chat.postMessage
    headers: dict[str, str]
    params: dict[str, Any]
    body: bytes
    content_type: str
    at: float = field(default_factory=time.monotonic)  # when it arrived


@dataclass
class _Failure:
    status: int
    retry_after: float | None
    times: int
    error: str | None
    channel: str | None = None  # only requests for this channel id
    reset: str | None = None  # "before" / "after" processing: the connection is cut instead
    hold: asyncio.Event | None = None  # a slow Slack: the request is processed once it is set


@dataclass
class PostedMessage:
    channel: str
    ts: str
    text: str | None
    blocks: list[dict[str, Any]] | None
    metadata: dict[str, Any] | None
    edits: list[dict[str, Any]] = field(default_factory=list)


Validator = Callable[[RecordedRequest], None]


class FakeSlack(LoopbackServer):
    """``async with FakeSlack() as slack:`` then ``AsyncWebClient(base_url=slack.api_url)``."""

    def __init__(
        self,
        *,
        bot_token: str = "xoxb-fake",
        app_token: str = "xapp-fake",
        team_id: str = "T0FAKE",
        bot_user_id: str = "U0BOT",
        validator: Validator | None = None,
        enforce_limits: bool = False,
        scopes: tuple[str, ...] | None = None,
    ) -> None:
        super().__init__()
        from bot.slack.manifest import BOT_SCOPES

        # What the workspace granted the bot token, reported on every call (x-oauth-scopes).
        self.scopes = BOT_SCOPES if scopes is None else scopes
        # Slack's pace for chat.postMessage: one message a second per channel (429 beyond).
        self.enforce_limits = enforce_limits
        self.limited: list[RecordedRequest] = []  # requests refused by the enforced limits
        self._last_post: dict[str, float] = {}
        # Called after a message was stored, before the answer goes out (crash tests kill
        # the client there: the post exists, the client never hears of it).
        self.after_accept: Callable[[], None] | None = None
        self.bot_token = bot_token
        self.app_token = app_token
        self.team_id = team_id
        self.bot_user_id = bot_user_id
        self.validator = validator
        self.requests: list[RecordedRequest] = []
        self.validation_errors: list[str] = []
        self.messages: dict[tuple[str, str], PostedMessage] = {}
        self.responses: list[dict[str, Any]] = []  # bodies posted to response_url
        self.acks: dict[str, dict[str, Any]] = {}  # envelope_id -> the client's ack frame
        self.uploads: dict[str, bytes] = {}
        self.connected = asyncio.Event()
        self.message_posted = asyncio.Event()  # set by every accepted chat.postMessage
        self._failures: dict[str, list[_Failure]] = {}
        self._ts = itertools.count(1)
        self._envelopes = itertools.count(1)
        self._ack_waiters: dict[str, asyncio.Future[dict[str, Any]]] = {}
        self._response_event = asyncio.Event()

    # ----------------------------------------------------------------- lifecycle
    def routes(self, app: web.Application) -> None:
        app.router.add_route("*", "/api/{method}", self._api)
        app.router.add_post("/response/{id}", self._response_url)
        app.router.add_post("/upload/{file_id}", self._upload)
        app.router.add_get("/link", self._socket)

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def api_url(self) -> str:
        return f"{self.base}/api/"

    # ----------------------------------------------------------------- programming
    def fail(
        self,
        api_method: str,
        status: int = 200,
        *,
        retry_after: float | None = None,
        times: int = 1,
        error: str | None = None,
        channel: str | None = None,
        reset: str | None = None,
        hold: asyncio.Event | None = None,
    ) -> None:
        """The next ``times`` calls of ``api_method`` answer ``status`` (429 with Retry-After).

        ``error`` sets Slack's error code (``channel_not_found`` with status 200, as Slack does).
        ``channel`` limits it to one channel id. ``reset="before"`` cuts the connection without
        doing anything; ``reset="after"`` does the work (posts the message), then cuts it.
        ``hold`` (an event of the fake's loop): the request is received and then waits, not
        yet processed, until the event is set; then it is answered as usual (status 200) or
        with the other fault given.
        """
        failure = _Failure(status, retry_after, times, error, channel, reset, hold)
        self._failures.setdefault(api_method, []).append(failure)

    def calls(self, api_method: str) -> list[RecordedRequest]:
        return [r for r in self.requests if r.api_method == api_method]

    # ----------------------------------------------------------------- HTTP
    async def _record(self, request: web.Request, api_method: str | None) -> RecordedRequest:
        body = await request.read()
        params: dict[str, Any] = dict(request.query)
        ctype = request.content_type
        if ctype == "application/json" and body:
            try:
                loaded = json.loads(body)
            except ValueError:
                loaded = None
            if isinstance(loaded, dict):
                params.update(loaded)
        elif ctype == "application/x-www-form-urlencoded" and body:
            params.update(parse_qsl(body.decode("utf-8", "replace"), keep_blank_values=True))
        recorded = RecordedRequest(
            http_method=request.method,
            path=request.path,
            api_method=api_method,
            headers=dict(request.headers),
            params=params,
            body=body,
            content_type=ctype,
        )
        self.requests.append(recorded)
        if self.validator is not None:
            try:
                self.validator(recorded)
            except Exception as exc:  # reported to the test, never to the client
                self.validation_errors.append(f"{api_method or request.path}: {exc}")
        return recorded

    def _token(self, req: RecordedRequest) -> str | None:
        auth = req.headers.get("Authorization", "")
        if auth.startswith("Bearer "):
            return auth[len("Bearer ") :]
        token = req.params.get("token")
        return token if isinstance(token, str) else None

    def _take_failure(self, method: str, req: RecordedRequest) -> _Failure | None:
        channel = str(req.params.get("channel", ""))
        for failure in self._failures.get(method, []):
            if failure.channel is None or failure.channel == channel:
                failure.times -= 1
                if failure.times <= 0:
                    self._failures[method].remove(failure)
                return failure
        return None

    async def _api(self, request: web.Request) -> web.StreamResponse:
        method = request.match_info["method"]
        req = await self._record(request, method)
        await self._hold_if_stalled(method)
        failure = self._take_failure(method, req)
        if failure is not None and failure.hold is not None:
            await failure.hold.wait()
            if failure.reset is None and failure.status == 200 and failure.error is None:
                failure = None  # only slow: answered as usual
        if failure is not None and failure.reset is not None:
            if failure.reset == "after":
                self._answer(method, req)
            _cut(request)
            return web.Response(status=500)  # never reaches the client: the socket is gone
        if failure is not None:
            headers = {}
            if failure.retry_after is not None:
                headers["Retry-After"] = f"{failure.retry_after:g}"
            error = failure.error or ("ratelimited" if failure.status == 429 else "fatal_error")
            return web.json_response(
                {"ok": False, "error": error}, status=failure.status, headers=headers
            )
        if self.enforce_limits and method == "chat.postMessage":
            channel = str(req.params.get("channel", ""))
            last = self._last_post.get(channel)
            if last is not None and req.at - last < 1.0:
                self.limited.append(req)
                wait = max(1, round(1.0 - (req.at - last) + 0.5))
                return web.json_response(
                    {"ok": False, "error": "ratelimited"},
                    status=429,
                    headers={"Retry-After": str(wait)},
                )
        # Slack reports the token's granted scopes on every Web API answer.
        headers = (
            {} if method == "apps.connections.open" else {"x-oauth-scopes": ",".join(self.scopes)}
        )
        return web.json_response(self._answer(method, req), headers=headers)

    def _answer(self, method: str, req: RecordedRequest) -> dict[str, Any]:
        token = self._token(req)
        wanted = self.app_token if method == "apps.connections.open" else self.bot_token
        if token != wanted:
            return {"ok": False, "error": "invalid_auth"}
        handler = getattr(self, "_m_" + method.replace(".", "_"), None)
        if handler is None:
            return {"ok": False, "error": "unknown_method"}
        result: dict[str, Any] = handler(req)
        if result.get("ok") and method == "chat.postMessage":
            self._last_post[str(req.params.get("channel", ""))] = req.at
        return result

    def _m_auth_test(self, req: RecordedRequest) -> dict[str, Any]:
        return {
            "ok": True,
            "url": "https://fake.slack.test/",
            "team": "Fake Team",
            "user": "marketbot",
            "team_id": self.team_id,
            "user_id": self.bot_user_id,
            "bot_id": "B0BOT",
            "is_enterprise_install": False,
        }

    def _m_apps_connections_open(self, req: RecordedRequest) -> dict[str, Any]:
        return {"ok": True, "url": f"ws://127.0.0.1:{self.port}/link"}

    def _m_chat_postMessage(self, req: RecordedRequest) -> dict[str, Any]:
        channel = str(req.params.get("channel", ""))
        if not channel:
            return {"ok": False, "error": "channel_not_found"}
        blocks = _maybe_json(req.params.get("blocks"))
        text = req.params.get("text")
        if not text and not blocks:
            return {"ok": False, "error": "no_text"}
        if isinstance(blocks, list) and len(blocks) > 50:
            return {"ok": False, "error": "invalid_blocks"}
        ts = f"1737968700.{next(self._ts):06d}"
        metadata = _maybe_json(req.params.get("metadata"))
        self.messages[(channel, ts)] = PostedMessage(channel, ts, text, blocks, metadata)
        self.message_posted.set()
        if self.after_accept is not None:
            self.after_accept()
        return {
            "ok": True,
            "channel": channel,
            "ts": ts,
            "message": {
                "type": "message",
                "text": text or "",
                "ts": ts,
                "user": self.bot_user_id,
                "bot_id": "B0BOT",
                "blocks": blocks or [],
            },
        }

    def _m_chat_update(self, req: RecordedRequest) -> dict[str, Any]:
        channel = str(req.params.get("channel", ""))
        ts = str(req.params.get("ts", ""))
        posted = self.messages.get((channel, ts))
        if posted is None:
            return {"ok": False, "error": "message_not_found"}
        posted.edits.append(dict(req.params))
        posted.text = req.params.get("text", posted.text)
        posted.blocks = _maybe_json(req.params.get("blocks")) or posted.blocks
        return {"ok": True, "channel": channel, "ts": ts, "text": posted.text or ""}

    def _m_conversations_history(self, req: RecordedRequest) -> dict[str, Any]:
        """Newest first, ``limit`` a page (Slack's default 100), ``oldest`` exclusive, cursors."""
        channel = str(req.params.get("channel", ""))
        oldest = float(req.params.get("oldest") or 0)
        limit = int(req.params.get("limit") or 100)
        found = [
            {"type": "message", "ts": m.ts, "text": m.text or "", "metadata": m.metadata}
            for (ch, _), m in sorted(self.messages.items(), key=lambda kv: float(kv[0][1]))
            if ch == channel and float(m.ts) > oldest
        ][::-1]
        start = int(str(req.params.get("cursor") or "0"))
        page = found[start : start + limit]
        more = start + limit < len(found)
        answer: dict[str, Any] = {"ok": True, "messages": page, "has_more": more}
        if more:
            answer["response_metadata"] = {"next_cursor": str(start + limit)}
        return answer

    def _m_files_getUploadURLExternal(self, req: RecordedRequest) -> dict[str, Any]:
        file_id = f"F{next(self._ts):08d}"
        return {"ok": True, "upload_url": f"{self.base}/upload/{file_id}", "file_id": file_id}

    def _m_files_completeUploadExternal(self, req: RecordedRequest) -> dict[str, Any]:
        files = _maybe_json(req.params.get("files")) or []
        return {"ok": True, "files": [{"id": f["id"], "title": f.get("title")} for f in files]}

    async def _upload(self, request: web.Request) -> web.StreamResponse:
        req = await self._record(request, None)
        self.uploads[request.match_info["file_id"]] = req.body
        return web.Response(text="OK - uploaded")

    async def _response_url(self, request: web.Request) -> web.StreamResponse:
        req = await self._record(request, None)
        self.responses.append(dict(req.params))
        self._response_event.set()
        return web.json_response({"ok": True})

    async def wait_for_responses(self, count: int, within: float = 5.0) -> list[dict[str, Any]]:
        async with asyncio.timeout(within):
            while len(self.responses) < count:
                self._response_event.clear()
                await self._response_event.wait()
        return self.responses

    # ----------------------------------------------------------------- Socket Mode
    async def _socket(self, request: web.Request) -> web.StreamResponse:
        await self._record(request, None)
        ws = web.WebSocketResponse(autoping=True)
        await ws.prepare(request)
        self._sockets.append(ws)
        await ws.send_json(
            {
                "type": "hello",
                "num_connections": len(self._sockets),
                "debug_info": {"host": "fake-slack", "approximate_connection_time": 3600},
                "connection_info": {"app_id": "A0FAKE"},
            }
        )
        self.connected.set()
        try:
            async for msg in ws:
                if msg.type != WSMsgType.TEXT:
                    continue
                frame = json.loads(msg.data)
                envelope_id = frame.get("envelope_id")
                if isinstance(envelope_id, str):
                    self.acks[envelope_id] = frame
                    waiter = self._ack_waiters.pop(envelope_id, None)
                    if waiter is not None and not waiter.done():
                        waiter.set_result(frame)
        finally:
            self._sockets.remove(ws)
        return ws

    async def send_envelope(
        self, type_: str, payload: dict[str, Any], *, within: float = 5.0
    ) -> dict[str, Any]:
        """Send one envelope over the newest socket and return the client's ack frame."""
        await asyncio.wait_for(self.connected.wait(), within)
        envelope_id = f"env-{next(self._envelopes)}"
        waiter: asyncio.Future[dict[str, Any]] = asyncio.get_running_loop().create_future()
        self._ack_waiters[envelope_id] = waiter
        await self._sockets[-1].send_json(
            {
                "envelope_id": envelope_id,
                "type": type_,
                "accepts_response_payload": True,
                "payload": payload,
            }
        )
        return await asyncio.wait_for(waiter, within)

    def slash_payload(
        self,
        command: str,
        text: str,
        *,
        user_id: str = "U0ALICE",
        channel_id: str = "C0MARKETS",
    ) -> dict[str, Any]:
        """A ``slash_commands`` payload as Slack sends it, response_url pointing at this fake."""
        return {
            "token": "verification-token",
            "team_id": self.team_id,
            "team_domain": "fake",
            "channel_id": channel_id,
            "channel_name": "markets",
            "user_id": user_id,
            "user_name": "alice",
            "command": command,
            "text": text,
            "api_app_id": "A0FAKE",
            "is_enterprise_install": "false",
            "response_url": f"{self.base}/response/{next(self._envelopes)}",
            "trigger_id": "1.2.3",
        }

    async def slash_command(self, command: str, text: str, **kwargs: str) -> dict[str, Any]:
        return await self.send_envelope(
            "slash_commands", self.slash_payload(command, text, **kwargs)
        )


def _cut(request: web.Request) -> None:
    """Drop the connection as a crashing proxy would: the client sees a reset, no answer."""
    transport = request.transport
    if transport is not None:
        transport.abort()


def _maybe_json(value: Any) -> Any:
    if isinstance(value, str):
        try:
            return json.loads(value)
        except ValueError:
            return value
    return value


class SlackSpecValidator:
    """Checks each Web API call against Slack's OpenAPI 2 description (required and typed params).

    The spec declares form parameters; slack_sdk sends some methods as JSON, where a structured
    value (``blocks``) is the same thing the form would carry as a JSON string, so it counts as
    a string. Methods newer than the 2021 spec (Socket Mode, files v2) are not in it: skipped.
    """

    def __init__(self, spec_path: Path) -> None:
        self.spec: dict[str, Any] = json.loads(spec_path.read_text(encoding="utf-8"))
        self.checked: list[str] = []
        self.unknown: set[str] = set()

    def __call__(self, req: RecordedRequest) -> None:
        import jsonschema

        if req.api_method is None:
            return
        entry = self.spec["paths"].get("/" + req.api_method)
        if entry is None:
            self.unknown.add(req.api_method)
            return
        operation = entry.get(req.http_method.lower()) or entry.get("post") or entry.get("get")
        properties: dict[str, Any] = {}
        required: list[str] = []
        for param in operation.get("parameters", []):
            if param["in"] == "header" and param["name"] == "token":
                if not req.headers.get("Authorization", "").startswith("Bearer "):
                    raise ValueError("missing bearer token")
                continue
            properties[param["name"]] = {"type": param.get("type", "string")}
            if param.get("required"):
                required.append(param["name"])
        schema = {"type": "object", "properties": properties, "required": required}
        jsonschema.validate(_as_form(req.params, properties), schema)
        self.checked.append(req.api_method)


def _is_number(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True


def _as_form(params: dict[str, Any], properties: dict[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for name, value in params.items():
        want = properties.get(name, {}).get("type")
        if want == "string" and isinstance(value, list | dict):
            out[name] = json.dumps(value)
        elif want == "string" and isinstance(value, bool):
            out[name] = "true" if value else "false"
        elif want == "boolean" and isinstance(value, str) and value in {"true", "false", "1", "0"}:
            out[name] = value in {"true", "1"}
        elif want == "integer" and isinstance(value, str) and value.lstrip("-").isdigit():
            out[name] = int(value)
        elif want == "number" and isinstance(value, str) and _is_number(value):
            out[name] = float(value)  # a form carries a ts ("1737968700.000001") as text
        else:
            out[name] = value
    return out


def main(argv: list[str] | None = None) -> None:
    """Run the fake standalone, e.g. for ``marketbot doctor`` or ``marketbot run`` by hand: it
    prints the settings that point marketbot at it, as shell lines."""
    import argparse

    parser = argparse.ArgumentParser(
        description="Loopback fake of Slack's Web API and Socket Mode."
    )
    parser.add_argument("--port", type=int, default=8767)
    args = parser.parse_args(argv)
    fake = FakeSlack()
    serve_standalone(
        fake,
        args.port,
        lambda: (
            f"# fake Slack on {fake.base} (Ctrl-C stops); marketbot's settings for it:\n"
            f"export MARKETBOT_SLACK__API_URL={fake.api_url}\n"
            f"export MARKETBOT_SLACK__BOT_TOKEN={fake.bot_token}\n"
            f"export MARKETBOT_SLACK__APP_TOKEN={fake.app_token}"
        ),
    )


if __name__ == "__main__":
    main()
