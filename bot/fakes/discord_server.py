"""A loopback Discord: REST API and gateway (plain ws://, JSON text frames), recording everything.

Driven by the real discord.py (``Route.BASE`` -> ``rest_base``, gateway -> ``gateway_url``): login,
command sync, READY/GUILD_CREATE, slash-command and autocomplete interactions, their callbacks
and follow-ups, message create/edit, programmable 429s (JSON ``retry_after`` plus a ``Via``
header, as Discord sends them). Every JSON body can be checked against Discord's OpenAPI.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import re
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from aiohttp import WSMsgType, web

from bot.fakes.loopback import LoopbackServer, serve_standalone

_EPOCH_MS = 1420070400000


def _snowflake(counter: itertools.count[int]) -> str:
    # Real-looking ids: a 2025 timestamp in the high bits keeps discord.py's date maths sane.
    return str(((1737968700000 - _EPOCH_MS) << 22) + next(counter))


def _json(data: Any, status: int = 200, headers: dict[str, str] | None = None) -> web.Response:
    # discord.py decodes a body as JSON only when Content-Type is exactly application/json.
    merged = {"Content-Type": "application/json", **(headers or {})}
    return web.Response(body=json.dumps(data).encode(), status=status, headers=merged)


@dataclass
class RecordedRequest:
    method: str
    path: str  # after /api/v10, e.g. /channels/1/messages
    headers: dict[str, str]
    json: Any
    files: dict[str, bytes] = field(default_factory=dict)
    at: float = field(default_factory=time.monotonic)  # when it arrived


@dataclass
class _Failure:
    method: str
    pattern: re.Pattern[str]
    status: int
    retry_after: float
    times: int
    global_: bool = False  # a 429 for the whole bot
    via: bool = True  # Discord's own 429s carry Via; Cloudflare's do not
    code: int = 0
    message: str | None = None
    reset: str | None = None  # "before" / "after" processing: the connection is cut instead


# Discord's documented limits: 50 requests/s per bot; 5 messages per 5 s per channel.
GLOBAL_PER_SECOND = 50
CHANNEL_BUCKET = (5, 5.0)
_PERMANENT_BODIES = {
    403: ("Missing Access", 50001),
    404: ("Unknown Channel", 10003),
}


class _Bucket:
    """A token bucket: ``capacity`` requests, refilled at ``rate`` per second."""

    def __init__(self, capacity: float, rate: float) -> None:
        self.capacity, self.rate = capacity, rate
        self.tokens, self.at = capacity, time.monotonic()

    def take(self, now: float) -> float:
        """0 when a token was taken, else the seconds until one is there."""
        self.tokens = min(self.capacity, self.tokens + (now - self.at) * self.rate)
        self.at = now
        if self.tokens >= 1:
            self.tokens -= 1
            return 0.0
        return (1 - self.tokens) / self.rate


Validator = Callable[[RecordedRequest], None]

MANAGE_CHANNELS = 1 << 4
VIEW_CHANNEL = 1 << 10
SEND_MESSAGES = 1 << 11
USE_APPLICATION_COMMANDS = 1 << 31
MEMBER_PERMISSIONS = VIEW_CHANNEL | SEND_MESSAGES | USE_APPLICATION_COMMANDS


class FakeDiscord(LoopbackServer):
    """``async with FakeDiscord() as discord:`` one guild, one text channel, a manager role."""

    def __init__(
        self,
        *,
        token: str = "fake-bot-token",
        validator: Validator | None = None,
        enforce_limits: bool = False,
    ) -> None:
        super().__init__()
        # Discord's limits, enforced: route buckets announced in X-RateLimit headers (as
        # Discord does, so discord.py can pace itself) and the global 50 requests a second.
        self.enforce_limits = enforce_limits
        self.limited: list[RecordedRequest] = []  # requests refused by the enforced limits
        self._global = _Bucket(GLOBAL_PER_SECOND, GLOBAL_PER_SECOND)
        self._windows: dict[str, tuple[float, int]] = {}  # channel -> (window start, used)
        # Called after a message was created, before the answer goes out (crash tests kill
        # the client there: the message exists, the client never hears of it).
        self.after_accept: Callable[[], None] | None = None
        self.token = token
        self.validator = validator
        self._ids = itertools.count(1)
        self.application_id = _snowflake(self._ids)
        self.bot_user_id = self.application_id
        self.guild_id = _snowflake(self._ids)
        self.channel_id = _snowflake(self._ids)
        self.manager_role_id = _snowflake(self._ids)
        self.guilds_joined = True  # False: the bot was never invited anywhere
        self.application_flags = 0  # privileged intents enabled in the Developer Portal
        self.requests: list[RecordedRequest] = []
        self.validation_errors: list[str] = []
        self.messages: dict[str, dict[str, Any]] = {}
        self.edits: list[tuple[str, Any]] = []
        self.commands: dict[str, list[dict[str, Any]]] = {}  # "global" or guild id -> commands
        self.callbacks: dict[str, list[dict[str, Any]]] = {}  # interaction id -> callback bodies
        self.followups: dict[str, list[dict[str, Any]]] = {}  # interaction token -> bodies
        self.identified = asyncio.Event()
        self.identify_payloads: list[dict[str, Any]] = []
        self.heartbeats = 0
        self._changed = asyncio.Event()
        self._failures: list[_Failure] = []
        self._seq = 0

    # ----------------------------------------------------------------- lifecycle
    def routes(self, app: web.Application) -> None:
        app.router.add_get("/gateway", self._gateway)
        app.router.add_route("*", "/api/v10/{tail:.*}", self._rest)

    @property
    def rest_base(self) -> str:
        return f"http://127.0.0.1:{self.port}/api/v10"

    @property
    def gateway_url(self) -> str:
        return f"ws://127.0.0.1:{self.port}/gateway"

    # ----------------------------------------------------------------- programming
    def fail(
        self,
        method: str,
        path_regex: str,
        *,
        status: int = 429,
        retry_after: float = 1.0,
        times: int = 1,
        global_: bool = False,
        via: bool = True,
        code: int = 0,
        message: str | None = None,
        reset: str | None = None,
    ) -> None:
        """The next ``times`` matching requests answer ``status`` (a Discord-shaped 429).

        ``global_`` makes the 429 bot-wide; ``via=False`` drops the Via header (Cloudflare's
        429). A 403 or 404 gets Discord's body (Missing Access, Unknown Channel) unless
        ``message``/``code`` say otherwise. ``reset="before"`` cuts the connection without
        doing anything; ``reset="after"`` does the work (creates the message), then cuts it.
        """
        self._failures.append(
            _Failure(
                method.upper(),
                re.compile(path_regex),
                status,
                retry_after,
                times,
                global_,
                via,
                code,
                message,
                reset,
            )
        )

    def calls(self, method: str, path_regex: str) -> list[RecordedRequest]:
        pattern = re.compile(path_regex)
        return [r for r in self.requests if r.method == method and pattern.fullmatch(r.path)]

    async def wait_for(self, predicate: Callable[[], bool], within: float = 5.0) -> None:
        async with asyncio.timeout(within):
            while not predicate():
                self._changed.clear()
                await self._changed.wait()

    # ----------------------------------------------------------------- REST
    async def _record(self, request: web.Request) -> RecordedRequest:
        path = "/" + request.match_info["tail"]
        body: Any = None
        files: dict[str, bytes] = {}
        if request.content_type == "multipart/form-data":
            reader = await request.multipart()
            async for part in reader:
                name = getattr(part, "name", None) or ""
                data = await part.read()  # type: ignore[union-attr]
                if name == "payload_json":
                    body = json.loads(data)
                else:
                    files[name] = bytes(data)
        else:
            raw = await request.read()
            body = json.loads(raw) if raw else None
        recorded = RecordedRequest(request.method, path, dict(request.headers), body, files)
        self.requests.append(recorded)
        if self.validator is not None:
            try:
                self.validator(recorded)
            except Exception as exc:  # reported to the test, never to the client
                self.validation_errors.append(f"{request.method} {path}: {exc}")
        return recorded

    async def _rest(self, request: web.Request) -> web.StreamResponse:
        req = await self._record(request)
        try:
            await self._hold_if_stalled(f"{req.method} {req.path}")
            failure = self._take_failure(req)
            if failure is not None and failure.reset is not None:
                if failure.reset == "after":
                    self._route(req)
                transport = request.transport
                if transport is not None:
                    transport.abort()  # the client sees a reset, no answer
                return web.Response(status=500)
            if failure is not None:
                return self._failure_response(failure)
            limited = self._enforce(req)
            if limited is not None:
                return limited
            response = self._route(req)
            if self.enforce_limits and self._message_route(req) is not None:
                self._bucket_headers(req, response)
            return response
        finally:
            self._changed.set()

    def _take_failure(self, req: RecordedRequest) -> _Failure | None:
        for failure in self._failures:
            if failure.method == req.method and failure.pattern.fullmatch(req.path):
                failure.times -= 1
                if failure.times <= 0:
                    self._failures.remove(failure)
                return failure
        return None

    def _failure_response(self, failure: _Failure) -> web.Response:
        if failure.status == 429:
            headers = {
                "Retry-After": f"{failure.retry_after:g}",
                "X-RateLimit-Scope": "global" if failure.global_ else "user",
            }
            if failure.global_:
                headers["X-RateLimit-Global"] = "true"
            if failure.via:
                headers["Via"] = "1.1 google"
            return _json(
                {
                    "message": "You are being rate limited.",
                    "retry_after": failure.retry_after,
                    "global": failure.global_,
                },
                status=429,
                headers=headers,
            )
        message, code = _PERMANENT_BODIES.get(failure.status, ("Server error", 0))
        return _json(
            {"message": failure.message or message, "code": failure.code or code},
            status=failure.status,
        )

    def _message_route(self, req: RecordedRequest) -> str | None:
        match = re.fullmatch(r"/channels/(\d+)/messages(?:/\d+)?", req.path)
        return match.group(1) if match and req.method in ("POST", "PATCH") else None

    def _enforce(self, req: RecordedRequest) -> web.Response | None:
        if not self.enforce_limits:
            return None
        wait = self._global.take(req.at)
        if wait > 0:
            self.limited.append(req)
            return _json(
                {"message": "You are being rate limited.", "retry_after": wait, "global": True},
                status=429,
                headers={
                    "Via": "1.1 google",
                    "Retry-After": f"{wait:.3f}",
                    "X-RateLimit-Global": "true",
                    "X-RateLimit-Scope": "global",
                },
            )
        channel = self._message_route(req)
        if channel is None:
            return None
        limit, period = CHANNEL_BUCKET
        start, used = self._windows.get(channel, (req.at, 0))
        if req.at - start >= period:
            start, used = req.at, 0
        if used >= limit:
            self.limited.append(req)
            wait = period - (req.at - start)
            return _json(
                {"message": "You are being rate limited.", "retry_after": wait, "global": False},
                status=429,
                headers={
                    "Via": "1.1 google",
                    "Retry-After": f"{wait:.3f}",
                    "X-RateLimit-Limit": str(limit),
                    "X-RateLimit-Remaining": "0",
                    "X-RateLimit-Reset-After": f"{wait:.3f}",
                    "X-RateLimit-Reset": f"{time.time() + wait:.3f}",
                    "X-RateLimit-Bucket": "channel-messages",
                    "X-RateLimit-Scope": "user",
                },
            )
        self._windows[channel] = (start, used + 1)
        return None

    def _bucket_headers(self, req: RecordedRequest, response: web.Response) -> None:
        channel = self._message_route(req)
        assert channel is not None
        limit, period = CHANNEL_BUCKET
        start, used = self._windows.get(channel, (req.at, 0))
        reset_after = max(0.0, period - (req.at - start))
        response.headers.update(
            {
                "X-RateLimit-Limit": str(limit),
                "X-RateLimit-Remaining": str(max(0, limit - used)),
                "X-RateLimit-Reset-After": f"{reset_after:.3f}",
                "X-RateLimit-Reset": f"{time.time() + reset_after:.3f}",
                "X-RateLimit-Bucket": "channel-messages",
            }
        )

    def _route(self, req: RecordedRequest) -> web.Response:
        if req.headers.get("Authorization") != f"Bot {self.token}" and not req.path.startswith(
            ("/interactions/", "/webhooks/")
        ):
            return _json({"message": "401: Unauthorized", "code": 0}, status=401)
        for method, pattern, handler in self._routes():
            match = re.fullmatch(pattern, req.path)
            if method == req.method and match:
                return handler(req, *match.groups())
        return _json({"message": "404: Not Found", "code": 0}, status=404)

    def _routes(self) -> list[tuple[str, str, Callable[..., web.Response]]]:
        return [
            ("GET", r"/users/@me", self._me),
            ("GET", r"/users/@me/guilds", self._my_guilds),
            ("GET", r"/oauth2/applications/@me", self._application),
            ("GET", r"/gateway/bot", self._gateway_bot),
            ("GET", r"/gateway", lambda req: _json({"url": self.gateway_url})),
            ("PUT", r"/applications/(\d+)/commands", self._put_commands),
            ("PUT", r"/applications/(\d+)/guilds/(\d+)/commands", self._put_guild_commands),
            ("POST", r"/channels/(\d+)/messages", self._create_message),
            ("PATCH", r"/channels/(\d+)/messages/(\d+)", self._edit_message),
            ("POST", r"/interactions/(\d+)/([^/]+)/callback", self._callback),
            ("POST", r"/webhooks/(\d+)/([^/]+)", self._followup),
            ("PATCH", r"/webhooks/(\d+)/([^/]+)/messages/@original", self._edit_original),
        ]

    def bot_user(self) -> dict[str, Any]:
        return {
            "id": self.bot_user_id,
            "username": "marketbot",
            "discriminator": "0",
            "global_name": None,
            "avatar": None,
            "bot": True,
            "flags": 0,
        }

    def _me(self, req: RecordedRequest) -> web.Response:
        return _json({**self.bot_user(), "verified": True, "mfa_enabled": False})

    def _my_guilds(self, req: RecordedRequest) -> web.Response:
        guild: dict[str, Any] = {
            "id": self.guild_id,
            "name": "Fake Traders",
            "icon": None,
            "owner": False,
            "permissions": str(MEMBER_PERMISSIONS),
            "features": [],
        }
        return _json([guild] if self.guilds_joined else [])

    def _application(self, req: RecordedRequest) -> web.Response:
        return _json(
            {
                "id": self.application_id,
                "name": "marketbot",
                "description": "",
                "icon": None,
                "bot_public": True,
                "bot_require_code_grant": False,
                "verify_key": "0" * 64,
                "owner": {"id": "1", "username": "owner", "discriminator": "0", "avatar": None},
                "flags": self.application_flags,
                "team": None,
                "summary": "",
                "interactions_endpoint_url": None,
            }
        )

    def _gateway_bot(self, req: RecordedRequest) -> web.Response:
        return _json(
            {
                "url": self.gateway_url,
                "shards": 1,
                "session_start_limit": {
                    "total": 1000,
                    "remaining": 999,
                    "reset_after": 0,
                    "max_concurrency": 1,
                },
            }
        )

    def _store_commands(self, key: str, body: list[dict[str, Any]]) -> web.Response:
        stored = []
        for command in body:
            stored.append(
                {
                    "id": _snowflake(self._ids),
                    "application_id": self.application_id,
                    "version": "1",
                    "type": 1,
                    "default_member_permissions": None,
                    "dm_permission": True,
                    "nsfw": False,
                    "options": [],
                    **command,
                }
            )
        self.commands[key] = stored
        return _json(stored)

    def _put_commands(self, req: RecordedRequest, app_id: str) -> web.Response:
        return self._store_commands("global", req.json or [])

    def _put_guild_commands(self, req: RecordedRequest, app_id: str, guild: str) -> web.Response:
        return self._store_commands(guild, req.json or [])

    def _message(
        self, channel_id: str, body: dict[str, Any], msg_id: str | None = None
    ) -> dict[str, Any]:
        now = datetime.now(UTC).isoformat()
        return {
            "id": msg_id or _snowflake(self._ids),
            "channel_id": channel_id,
            "type": 0,
            "author": self.bot_user(),
            "content": body.get("content") or "",
            "embeds": body.get("embeds") or [],
            "attachments": [
                {
                    "id": _snowflake(self._ids),
                    "filename": name,
                    "size": 1,
                    "url": "http://x/a",
                    "proxy_url": "http://x/a",
                }
                for name in body.get("_files", [])
            ],
            "timestamp": now,
            "edited_timestamp": None,
            "tts": False,
            "mention_everyone": False,
            "mentions": [],
            "mention_roles": [],
            "pinned": False,
            "flags": body.get("flags", 0),
            "components": [],
            "nonce": body.get("nonce"),
        }

    def _create_message(self, req: RecordedRequest, channel_id: str) -> web.Response:
        body = dict(req.json or {})
        nonce = body.get("nonce")
        if nonce is not None and body.get("enforce_nonce"):
            # Discord answers a repeated nonce with the message it already created.
            for message in self.messages.values():
                if message["channel_id"] == channel_id and message.get("nonce") == nonce:
                    return _json(message)
        body["_files"] = list(req.files)
        message = self._message(channel_id, body)
        self.messages[message["id"]] = message
        if self.after_accept is not None:
            self.after_accept()
        return _json(message)

    def _edit_message(self, req: RecordedRequest, channel_id: str, msg_id: str) -> web.Response:
        message = self.messages.get(msg_id)
        if message is None or message["channel_id"] != channel_id:
            return _json({"message": "Unknown Message", "code": 10008}, status=404)
        body = req.json or {}
        self.edits.append((msg_id, body))
        for key in ("content", "embeds", "flags"):
            if key in body:
                message[key] = body[key]
        message["edited_timestamp"] = datetime.now(UTC).isoformat()
        return _json(message)

    def _callback(self, req: RecordedRequest, interaction_id: str, token: str) -> web.Response:
        body = req.json or {}
        self.callbacks.setdefault(interaction_id, []).append(body)
        data = body.get("data") or {}
        interaction = {
            "id": interaction_id,
            "type": 2,
            "activity_instance_id": None,
            "response_message_id": None,
            "response_message_loading": body.get("type") == 5,
            "response_message_ephemeral": bool((data.get("flags") or 0) & 64),
        }
        resource: dict[str, Any] = {"type": body.get("type")}
        if body.get("type") == 4:
            msg = self._message(self.channel_id, data)
            interaction["response_message_id"] = msg["id"]
            resource["message"] = msg
        return _json({"interaction": interaction, "resource": resource})

    def _followup(self, req: RecordedRequest, app_id: str, token: str) -> web.Response:
        body = req.json or {}
        self.followups.setdefault(token, []).append(body)
        return _json(self._message(self.channel_id, body))

    def _edit_original(self, req: RecordedRequest, app_id: str, token: str) -> web.Response:
        body = req.json or {}
        self.followups.setdefault(token, []).append(body)
        return _json(self._message(self.channel_id, body))

    # ----------------------------------------------------------------- gateway
    async def _send(self, ws: web.WebSocketResponse, op: int, d: Any, t: str | None = None) -> None:
        frame: dict[str, Any] = {"op": op, "d": d, "s": None, "t": t}
        if op == 0:
            self._seq += 1
            frame["s"] = self._seq
        # Text frames: discord.py inflates only binary ones, so plain JSON needs no zlib.
        await ws.send_str(json.dumps(frame))

    async def _gateway(self, request: web.Request) -> web.StreamResponse:
        ws = web.WebSocketResponse()
        await ws.prepare(request)
        self._sockets.append(ws)
        await self._send(ws, 10, {"heartbeat_interval": 41250})
        try:
            async for msg in ws:
                if msg.type != WSMsgType.TEXT:
                    continue
                frame = json.loads(msg.data)
                op = frame.get("op")
                if op == 1:
                    self.heartbeats += 1
                    await self._send(ws, 11, None)
                elif op == 2:
                    self.identify_payloads.append(frame["d"])
                    await self._send(ws, 0, self._ready(frame["d"]), "READY")
                    await self._send(ws, 0, self.guild_payload(), "GUILD_CREATE")
                    self.identified.set()
                elif op == 6:
                    await self._send(ws, 0, {}, "RESUMED")
                self._changed.set()
        finally:
            self._sockets.remove(ws)
        return ws

    def _ready(self, identify: dict[str, Any]) -> dict[str, Any]:
        return {
            "v": 10,
            "user": self.bot_user(),
            "guilds": [{"id": self.guild_id, "unavailable": True}],
            "session_id": "fake-session",
            "resume_gateway_url": self.gateway_url,
            "shard": identify.get("shard", [0, 1]),
            "application": {"id": self.application_id, "flags": 0},
            "private_channels": [],
            "relationships": [],
        }

    def role(self, role_id: str, name: str, permissions: int, position: int) -> dict[str, Any]:
        return {
            "id": role_id,
            "name": name,
            "permissions": str(permissions),
            "position": position,
            "color": 0,
            "hoist": False,
            "managed": False,
            "mentionable": False,
            "flags": 0,
            "icon": None,
            "unicode_emoji": None,
        }

    def guild_payload(self) -> dict[str, Any]:
        return {
            "id": self.guild_id,
            "name": "Fake Trading Desk",
            "icon": None,
            "splash": None,
            "owner_id": "1",
            "afk_timeout": 300,
            "verification_level": 0,
            "default_message_notifications": 0,
            "explicit_content_filter": 0,
            "roles": [
                self.role(self.guild_id, "@everyone", MEMBER_PERMISSIONS, 0),
                self.role(self.manager_role_id, "alerts-admin", MEMBER_PERMISSIONS, 1),
            ],
            "emojis": [],
            "stickers": [],
            "features": [],
            "mfa_level": 0,
            "system_channel_id": None,
            "joined_at": "2025-01-01T00:00:00+00:00",
            "large": False,
            "unavailable": False,
            "member_count": 2,
            "voice_states": [],
            "presences": [],
            "threads": [],
            "stage_instances": [],
            "guild_scheduled_events": [],
            "soundboard_sounds": [],
            "members": [
                {
                    "user": self.bot_user(),
                    "roles": [],
                    "joined_at": "2025-01-01T00:00:00+00:00",
                    "deaf": False,
                    "mute": False,
                    "flags": 0,
                }
            ],
            "channels": [
                {
                    "id": self.channel_id,
                    "type": 0,
                    "name": "markets",
                    "position": 0,
                    "permission_overwrites": [],
                    "nsfw": False,
                    "parent_id": None,
                    "topic": None,
                    "last_message_id": None,
                    "rate_limit_per_user": 0,
                }
            ],
            "premium_tier": 0,
            "premium_subscription_count": 0,
            "preferred_locale": "en-US",
            "nsfw_level": 0,
            "premium_progress_bar_enabled": False,
        }

    def member(self, user_id: str, permissions: int, roles: list[str]) -> dict[str, Any]:
        return {
            "user": {
                "id": user_id,
                "username": f"user{user_id[-4:]}",
                "discriminator": "0",
                "global_name": None,
                "avatar": None,
            },
            "roles": roles,
            "permissions": str(permissions),
            "joined_at": "2025-01-01T00:00:00+00:00",
            "deaf": False,
            "mute": False,
            "flags": 0,
            "nick": None,
            "avatar": None,
            "premium_since": None,
            "pending": False,
            "communication_disabled_until": None,
        }

    async def interact(
        self,
        name: str,
        options: dict[str, Any] | None = None,
        *,
        permissions: int = MEMBER_PERMISSIONS,
        roles: list[str] | None = None,
        user_id: str = "222222222222222222",
        autocomplete: str | None = None,
    ) -> tuple[str, str]:
        """Dispatch INTERACTION_CREATE for ``/name``; returns (interaction id, token).

        ``autocomplete`` names the focused option: the interaction is then type 4.
        """
        command = next(
            (c for cmds in self.commands.values() for c in cmds if c["name"] == name), None
        )
        if command is None:
            raise LookupError(f"/{name} was never synced")
        kinds = {o["name"]: o["type"] for o in command.get("options", [])}
        opts = []
        for key, value in (options or {}).items():
            option: dict[str, Any] = {"name": key, "type": kinds.get(key, 3), "value": value}
            if key == autocomplete:
                option["focused"] = True
            opts.append(option)
        interaction_id = _snowflake(self._ids)
        token = f"tok-{interaction_id}"
        payload: dict[str, Any] = {
            "id": interaction_id,
            "application_id": self.application_id,
            "type": 4 if autocomplete else 2,
            "token": token,
            "version": 1,
            "guild_id": self.guild_id,
            "channel_id": self.channel_id,
            "channel": {
                "id": self.channel_id,
                "type": 0,
                "guild_id": self.guild_id,
                "name": "markets",
                "permissions": str(permissions),
                "position": 0,
                "permission_overwrites": [],
                "nsfw": False,
                "parent_id": None,
            },
            "member": self.member(user_id, permissions, roles or []),
            "data": {
                "id": command["id"],
                "name": name,
                "type": 1,
                "options": opts,
                "guild_id": self.guild_id,
            },
            "locale": "en-US",
            "guild_locale": "en-US",
            "app_permissions": str(MEMBER_PERMISSIONS),
            "entitlements": [],
            "authorizing_integration_owners": {"0": self.guild_id},
            "context": 0,
            "attachment_size_limit": 10485760,
        }
        await self.identified.wait()
        await self._send(self._sockets[-1], 0, payload, "INTERACTION_CREATE")
        return interaction_id, token


class DiscordSpecValidator:
    """Checks each JSON body against the request schema in Discord's OpenAPI 3.1 description."""

    def __init__(self, spec_path: Path) -> None:
        from referencing import Registry, Resource
        from referencing.jsonschema import DRAFT202012

        self.spec: dict[str, Any] = json.loads(spec_path.read_text(encoding="utf-8"))
        resource = Resource.from_contents(self.spec, default_specification=DRAFT202012)
        self.registry = Registry().with_resource("urn:discord-openapi", resource)
        self._paths = [(_template_pattern(p), p) for p in self.spec["paths"]]
        self.checked: list[str] = []

    def _template(self, path: str) -> str | None:
        # Literal segments win over parameters (/users/@me before /users/{user_id}).
        matches: list[str] = [t for pattern, t in self._paths if pattern.match(path)]
        if not matches:
            return None
        return min(matches, key=lambda t: t.count("{"))

    def __call__(self, req: RecordedRequest) -> None:
        from jsonschema import Draft202012Validator

        template = self._template(req.path)
        if template is None:
            raise ValueError(f"no such path in Discord's API: {req.path}")
        operation = self.spec["paths"][template].get(req.method.lower())
        if operation is None:
            raise ValueError(f"{req.method} not allowed on {template}")
        body = operation.get("requestBody")
        if body is None or req.json is None:
            self.checked.append(f"{req.method} {template}")
            return
        if "application/json" not in body["content"]:
            raise ValueError(f"{template} takes no JSON body")
        pointer = "/".join(
            part.replace("~", "~0").replace("/", "~1")
            for part in (
                "paths",
                template,
                req.method.lower(),
                "requestBody",
                "content",
                "application/json",
                "schema",
            )
        )
        validator = Draft202012Validator(
            {"$ref": f"urn:discord-openapi#/{pointer}"}, registry=self.registry
        )
        body_json = _snowflakes_as_strings(req.json)
        errors = sorted(validator.iter_errors(body_json), key=lambda e: list(e.path))
        if errors:
            best = errors[0]
            raise ValueError(f"{'/'.join(map(str, best.path))}: {best.message}")
        self.checked.append(f"{req.method} {template}")


def _template_pattern(template: str) -> re.Pattern[str]:
    parts = [r"[^/]+" if seg.startswith("{") else re.escape(seg) for seg in template.split("/")]
    return re.compile("^" + "/".join(parts) + "$")


# discord.py writes these ids as JSON numbers, which Discord accepts; its OpenAPI types every
# snowflake as a string, so they are compared as strings.
_SNOWFLAKE_LISTS = (("allowed_mentions", "roles"), ("allowed_mentions", "users"))
_SNOWFLAKE_FIELDS = ("message_id", "channel_id", "guild_id", "id")


def _snowflakes_as_strings(body: Any) -> Any:
    if not isinstance(body, dict):
        return body
    out = dict(body)
    for parent, key in _SNOWFLAKE_LISTS:
        inner = out.get(parent)
        if isinstance(inner, dict) and isinstance(inner.get(key), list):
            out[parent] = {**inner, key: [str(v) if isinstance(v, int) else v for v in inner[key]]}
    reference = out.get("message_reference")
    if isinstance(reference, dict):
        out["message_reference"] = {
            k: str(v) if k in _SNOWFLAKE_FIELDS and isinstance(v, int) else v
            for k, v in reference.items()
        }
    if isinstance(out.get("attachments"), list):
        out["attachments"] = [
            {**a, "id": str(a["id"])} if isinstance(a, dict) and isinstance(a.get("id"), int) else a
            for a in out["attachments"]
        ]
    return out


def main(argv: list[str] | None = None) -> None:
    """Run the fake standalone (one server, one channel), e.g. for ``marketbot doctor`` by hand:
    it prints the settings that point marketbot at it, as shell lines."""
    import argparse

    parser = argparse.ArgumentParser(description="Loopback fake of Discord's REST API and gateway.")
    parser.add_argument("--port", type=int, default=8768)
    args = parser.parse_args(argv)
    fake = FakeDiscord()
    serve_standalone(
        fake,
        args.port,
        lambda: (
            f"# fake Discord on http://127.0.0.1:{fake.port} (Ctrl-C stops); marketbot's "
            f"settings for it:\n"
            f"export MARKETBOT_DISCORD__API_URL={fake.rest_base}\n"
            f"export MARKETBOT_DISCORD__GATEWAY_URL={fake.gateway_url}\n"
            f"export MARKETBOT_DISCORD__TOKEN={fake.token}"
        ),
    )


if __name__ == "__main__":
    main()
