"""`marketbot doctor`: every outside dependency checked once, each failure with its fix.

Each check talks to the real thing with the real client library (slack_sdk, discord.py,
yfinance, websockets, SQLAlchemy), bounded by a timeout, and never changes anything: no
migration is applied, no message is sent.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal
from zoneinfo import ZoneInfo

from alerts.wording import local_time, plural

if TYPE_CHECKING:
    from rich.table import Table

    from bot.settings import DiscordSettings, Settings, SlackSettings

Status = Literal["pass", "fail", "skip"]
PROBE_SYMBOL = "SPY"  # always quoted by Yahoo, in or out of session
CHECK_TIMEOUT_SECONDS = 15.0


@dataclass(frozen=True, slots=True)
class Finding:
    """One row of the doctor's table; ``fix`` says what to do when ``status`` is fail."""

    area: str
    check: str
    status: Status
    detail: str
    fix: str = ""

    @property
    def failed(self) -> bool:
        return self.status == "fail"


def _pass(area: str, check: str, detail: str) -> Finding:
    return Finding(area, check, "pass", detail)


def _fail(area: str, check: str, detail: str, fix: str) -> Finding:
    return Finding(area, check, "fail", detail, fix)


def _skip(area: str, check: str, detail: str) -> Finding:
    return Finding(area, check, "skip", detail)


# --------------------------------------------------------------------------- configuration


def check_configuration(settings: Settings) -> list[Finding]:
    """What the settings ask for is complete: each enabled platform has what its mode needs."""
    area = "configuration"
    found: list[Finding] = []
    platforms = [
        name
        for name, on in (
            ("slack", settings.slack.enabled),
            ("discord", settings.discord.enabled),
            ("console", settings.console),
        )
        if on
    ]
    found.append(_pass(area, "settings", "valid; platforms: " + (", ".join(platforms) or "none")))
    slack = settings.slack
    if slack.enabled:
        token = slack.bot_token.get_secret_value() if slack.bot_token else ""
        if not token.startswith("xoxb-"):
            found.append(
                _fail(
                    area,
                    "slack bot token",
                    "MARKETBOT_SLACK__BOT_TOKEN is not a bot token (xoxb-…)",
                    "copy the Bot User OAuth Token from the app's OAuth & Permissions page",
                )
            )
        if slack.mode == "socket":
            app_token = slack.app_token.get_secret_value() if slack.app_token else ""
            if not app_token:
                found.append(
                    _fail(
                        area,
                        "slack app token",
                        "Socket Mode needs MARKETBOT_SLACK__APP_TOKEN",
                        _APP_TOKEN_FIX,
                    )
                )
            elif not app_token.startswith("xapp-"):
                found.append(
                    _fail(
                        area,
                        "slack app token",
                        "MARKETBOT_SLACK__APP_TOKEN is not an app-level token (xapp-…)",
                        _APP_TOKEN_FIX,
                    )
                )
        elif slack.signing_secret is None:
            found.append(
                _fail(
                    area,
                    "slack signing secret",
                    "HTTP mode needs MARKETBOT_SLACK__SIGNING_SECRET",
                    "copy Basic Information → Signing Secret",
                )
            )
    if not (settings.slack.enabled or settings.discord.enabled):
        found.append(_skip(area, "chat platforms", "no Slack or Discord token: console only"))
    return found


_APP_TOKEN_FIX = (
    "Basic Information → App-Level Tokens → Generate, scope connections:write; set "
    "MARKETBOT_SLACK__APP_TOKEN (or use HTTP mode: slack-manifest --http URL)"
)


# --------------------------------------------------------------------------- database


def check_database(settings: Settings) -> list[Finding]:
    """Reachable, and migrated to this version's head (nothing is applied here)."""
    from alembic.config import Config
    from alembic.script import ScriptDirectory
    from sqlalchemy.engine import make_url
    from sqlalchemy.exc import DBAPIError

    from bot.database import DATABASE_URL_SETTING, safe_url
    from bot.store import SqlStore

    area = "database"
    url = settings.database_url
    where = safe_url(url)
    parsed = make_url(url)
    file = parsed.database if parsed.get_backend_name() == "sqlite" else None
    if file not in (None, "", ":memory:") and not os.path.exists(str(file)):
        # Connecting would create an empty file; say what to run instead.
        return [
            _fail(
                area,
                "reachable",
                f"no database file at {parsed.database}",
                "run `marketbot db upgrade` (creates and migrates it)",
            )
        ]
    store = SqlStore(url)
    try:
        current = store.current_revision()
    except DBAPIError as exc:
        reason = str(exc.orig or exc).strip().splitlines()[0][:200]
        return [
            _fail(
                area,
                "reachable",
                f"unreachable at {where}: {reason}",
                f"start the database, or correct {DATABASE_URL_SETTING}",
            )
        ]
    finally:
        store.close()
    found = [_pass(area, "reachable", where)]
    cfg = Config()
    cfg.set_main_option("script_location", "bot:migrations")
    script = ScriptDirectory.from_config(cfg)
    head = script.get_current_head()
    known = {rev.revision for rev in script.walk_revisions()}
    if current == head:
        found.append(_pass(area, "migrations", f"at {head} (latest)"))
    elif current is None:
        found.append(
            _fail(
                area,
                "migrations",
                "not migrated (no marketbot tables)",
                "run `marketbot db upgrade`",
            )
        )
    elif current not in known:
        found.append(
            _fail(
                area,
                "migrations",
                f"at {current}, unknown to this marketbot",
                "upgrade marketbot to the version that wrote this database",
            )
        )
    else:
        found.append(
            _fail(
                area, "migrations", f"at {current}, latest is {head}", "run `marketbot db upgrade`"
            )
        )
    return found


def check_destinations(settings: Settings) -> list[Finding]:
    """Channels the bot stopped posting to because they refused for good (403/404 answers)."""
    from bot.store import SqlStore

    store = SqlStore(settings.database_url)
    try:
        broken = store.broken_destinations()
    finally:
        store.close()
    if not broken:
        return [_pass("destinations", "broken", "none: every channel accepts posts")]
    zone = ZoneInfo(settings.timezone)  # the bot's display zone, as in its replies
    found = []
    for lane in broken[:20]:
        retry = f"; next try {local_time(lane.retry_at, zone)}" if lane.retry_at else ""
        found.append(
            _fail(
                "destinations",
                lane.channel,
                f"refused since {local_time(lane.since, zone)}: {lane.error[:120]}{retry}",
                "invite the bot to the channel again (or `/unwatch all` there); the next alert "
                "to it after the backoff clears the mark when it is accepted",
            )
        )
    return found


# --------------------------------------------------------------------------- Slack


async def check_slack(slack: SlackSettings) -> list[Finding]:
    """``auth.test`` for the bot token and its granted scopes; Socket Mode's app token."""
    from slack_sdk.errors import SlackApiError

    from bot.slack.manifest import BOT_SCOPES
    from bot.slack.platform import make_web_client

    area = "slack"
    if not slack.enabled or slack.bot_token is None:
        return [_skip(area, "bot token", "not configured (MARKETBOT_SLACK__BOT_TOKEN)")]
    client = make_web_client(
        slack.bot_token.get_secret_value(),
        api_url=slack.api_url,
        timeout=int(CHECK_TIMEOUT_SECONDS),
    )
    found: list[Finding] = []
    try:
        response = await client.auth_test()
    except SlackApiError as exc:
        error = str(exc.response.get("error", "error"))
        return [
            _fail(
                area,
                "auth.test",
                f"token refused: {error}",
                "set MARKETBOT_SLACK__BOT_TOKEN to the Bot User OAuth Token (xoxb-…); "
                "reinstall the app if it was revoked",
            )
        ]
    except Exception as exc:
        return [
            _fail(
                area,
                "auth.test",
                f"Slack unreachable: {_reason(exc)}",
                "check the network (or MARKETBOT_SLACK__API_URL)",
            )
        ]
    found.append(
        _pass(area, "auth.test", f"team {response.get('team')}, bot {response.get('user')}")
    )
    header = _header(response.headers, "x-oauth-scopes")
    if header is None:
        found.append(
            _fail(
                area,
                "scopes",
                "Slack did not report the token's scopes",
                "reinstall the app from `marketbot slack-manifest`",
            )
        )
    else:
        granted = {s.strip() for s in header.split(",") if s.strip()}
        missing = [s for s in BOT_SCOPES if s not in granted]
        if missing:
            found.append(
                _fail(
                    area,
                    "scopes",
                    "missing: " + ", ".join(missing),
                    "add them under OAuth & Permissions → Bot Token Scopes (or "
                    "recreate the app from `marketbot slack-manifest`), then "
                    "reinstall the app",
                )
            )
        else:
            found.append(_pass(area, "scopes", ", ".join(BOT_SCOPES)))
    if slack.mode == "socket" and slack.app_token is not None:
        try:
            await client.apps_connections_open(app_token=slack.app_token.get_secret_value())
        except SlackApiError as exc:
            error = str(exc.response.get("error", "error"))
            found.append(_fail(area, "socket mode", f"app token refused: {error}", _APP_TOKEN_FIX))
        except Exception as exc:
            found.append(
                _fail(
                    area, "socket mode", f"Slack unreachable: {_reason(exc)}", "check the network"
                )
            )
        else:
            found.append(_pass(area, "socket mode", "app token opens a connection"))
    return found


def _header(headers: Any, name: str) -> str | None:
    # slack_sdk hands headers over as a dict (lower or original case) or a list per name.
    for key, value in dict(headers or {}).items():
        if key.lower() == name:
            return str(value[0] if isinstance(value, list) else value)
    return None


# --------------------------------------------------------------------------- Discord


async def check_discord(discord_settings: DiscordSettings) -> list[Finding]:
    """The token (/users/@me), the privileged intents the bot needs, the servers it is in."""
    import discord

    from bot.discord.app import bot_intents, configure_endpoints

    area = "discord"
    if discord_settings.token is None:
        return [_skip(area, "token", "not configured (MARKETBOT_DISCORD__TOKEN)")]
    configure_endpoints(discord_settings.api_url, discord_settings.gateway_url)
    intents = bot_intents()
    client = discord.Client(intents=intents)
    found: list[Finding] = []
    try:
        try:
            await client.login(discord_settings.token.get_secret_value())
        except discord.LoginFailure:
            return [
                _fail(
                    area,
                    "token",
                    "refused (401 Unauthorized)",
                    "Developer Portal → your app → Bot → Reset Token; set MARKETBOT_DISCORD__TOKEN",
                )
            ]
        except (discord.HTTPException, OSError, TimeoutError) as exc:
            return [
                _fail(
                    area,
                    "token",
                    f"Discord unreachable: {_reason(exc)}",
                    "check the network (or MARKETBOT_DISCORD__API_URL)",
                )
            ]
        user = client.user
        found.append(_pass(area, "token", f"logged in as {user.name if user else '?'}"))
        app = await client.application_info()
        found.append(_intent_finding(intents, app.flags))
        guilds = [guild async for guild in client.fetch_guilds(limit=200)]
        if guilds:
            names = ", ".join(g.name for g in guilds[:5])
            more = f" (+{len(guilds) - 5})" if len(guilds) > 5 else ""
            found.append(_pass(area, "servers", f"{len(guilds)}: {names}{more}"))
        else:
            found.append(
                _fail(
                    area,
                    "servers",
                    "the bot is in no server",
                    f"open the URL from `marketbot discord-invite {app.id}` and add it to a server",
                )
            )
    finally:
        await client.close()
    return found


def _intent_finding(intents: Any, flags: Any) -> Finding:
    """Each privileged intent the bot asks for must be enabled for the application."""
    privileged = {
        "members": ("gateway_guild_members", "gateway_guild_members_limited", "Server Members"),
        "presences": ("gateway_presence", "gateway_presence_limited", "Presence"),
        "message_content": (
            "gateway_message_content",
            "gateway_message_content_limited",
            "Message Content",
        ),
    }
    needed = [name for name in privileged if getattr(intents, name, False)]
    missing = [
        privileged[name][2]
        for name in needed
        if not (
            getattr(flags, privileged[name][0], False) or getattr(flags, privileged[name][1], False)
        )
    ]
    if missing:
        return _fail(
            "discord",
            "intents",
            "not enabled: " + ", ".join(missing),
            "Developer Portal → Bot → Privileged Gateway Intents: enable " + ", ".join(missing),
        )
    if not needed:
        return _pass("discord", "intents", "none privileged needed (guilds only)")
    return _pass("discord", "intents", "enabled: " + ", ".join(needed))


# --------------------------------------------------------------------------- Yahoo, news


def check_yahoo_rest(settings: Settings) -> list[Finding]:
    """One batched quote request through yfinance's session, as the poller makes it."""
    from alerts.ports import SystemClock
    from bot.market.yahoo_poll import YahooPoller

    area = "yahoo"
    try:
        poller = YahooPoller(
            clock=SystemClock(),
            base_url=settings.yahoo.base_url,
            timeout=min(settings.yahoo.timeout_seconds, CHECK_TIMEOUT_SECONDS),
        )
    except ValueError as exc:
        return [_fail(area, "rest", str(exc), "correct MARKETBOT_YAHOO__BASE_URL")]
    try:
        result = poller.fetch_quotes_sync([PROBE_SYMBOL])
        answered = poller.backoff.failures == 0  # the request went through; no backoff began
    finally:
        poller.close()
    if PROBE_SYMBOL in result.quotes:
        return [_pass(area, "rest", f"{PROBE_SYMBOL} quoted")]
    reason = result.failed.get(PROBE_SYMBOL, "no answer")
    if answered:
        # Yahoo itself always quotes SPY: an answer without it comes from a mirror or a fake,
        # so the network is fine and opening it would not help.
        return [
            _fail(
                area,
                "rest",
                f"no {PROBE_SYMBOL} quote: {reason}",
                f"the server at MARKETBOT_YAHOO__BASE_URL answered without {PROBE_SYMBOL}: have "
                f"it quote {PROBE_SYMBOL} (the fake: --quote {PROBE_SYMBOL}=600.0:598.0)",
            )
        ]
    return [
        _fail(
            area,
            "rest",
            f"no {PROBE_SYMBOL} quote: {reason}",
            "allow HTTPS to query1/query2.finance.yahoo.com and fc.yahoo.com (or "
            "correct MARKETBOT_YAHOO__BASE_URL)",
        )
    ]


async def check_yahoo_stream(settings: Settings) -> list[Finding]:
    """The live price websocket opens (and subscribes); polling covers it when it does not."""
    import json

    import websockets

    area = "yahoo"
    if not settings.yahoo.stream_enabled:
        return [_skip(area, "stream", "disabled (MARKETBOT_YAHOO__STREAM_ENABLED=false)")]
    url = settings.yahoo.stream_url
    try:
        async with asyncio.timeout(CHECK_TIMEOUT_SECONDS):
            async with websockets.connect(url, open_timeout=CHECK_TIMEOUT_SECONDS) as ws:
                await ws.send(json.dumps({"subscribe": [PROBE_SYMBOL]}))
    except Exception as exc:
        return [
            _fail(
                area,
                "stream",
                f"cannot open {url}: {_reason(exc)}",
                "allow wss to streamer.finance.yahoo.com, or set "
                "MARKETBOT_YAHOO__STREAM_ENABLED=false to poll only",
            )
        ]
    return [_pass(area, "stream", f"connected to {url}")]


async def check_news_feeds(settings: Settings) -> list[Finding]:
    """Each feed the bot would read answers and parses, fetched and parsed as the bot does."""
    from datetime import UTC, datetime

    from alerts.ports import SystemClock
    from bot.news.feeds import feeds_for
    from bot.news.fetch import FeedFetcher, FetchStatus
    from bot.news.parse import parse_feed

    news = settings.news
    if not news.enabled:
        return [_skip("news", "feeds", "disabled (MARKETBOT_NEWS__ENABLED=false)")]
    feeds = feeds_for(
        [PROBE_SYMBOL],
        extra=news.feeds,
        defaults=news.default_feeds,
        yahoo_headlines=news.yahoo_headlines,
        batch_size=news.yahoo_batch_size,
    )
    if not feeds:
        return [_skip("news", "feeds", "no news feeds configured")]
    fetcher = FeedFetcher(
        clock=SystemClock(),
        yahoo_base_url=settings.yahoo.base_url,
        timeout=min(news.timeout_seconds, CHECK_TIMEOUT_SECONDS),
        max_bytes=news.max_bytes,
    )
    found = []
    try:
        for feed, outcome in zip(feeds, await fetcher.fetch_all(feeds), strict=True):
            name = feed.label
            if outcome.status is not FetchStatus.BODY:
                found.append(
                    _fail(
                        "news",
                        name,
                        f"no feed: {outcome.error or outcome.status}",
                        "check the URL in MARKETBOT_NEWS__FEEDS (or the network)",
                    )
                )
                continue
            parsed = parse_feed(
                outcome.body,
                source=feed.name,
                content_type=outcome.content_type,
                now=datetime.now(UTC),
            )
            if parsed.problem:
                found.append(
                    _fail(
                        "news",
                        name,
                        parsed.problem,
                        "point MARKETBOT_NEWS__FEEDS at an RSS or Atom URL",
                    )
                )
            else:
                found.append(_pass("news", name, plural(len(parsed.entries), "headline")))
    finally:
        await fetcher.close()
    return found


def _reason(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
    return f"{type(exc).__name__}: {text}"[:200] if text else type(exc).__name__


# --------------------------------------------------------------------------- all of it


async def run_checks(settings: Settings) -> list[Finding]:
    """Every check, in the order a new install needs them; none can hang the others."""
    found = check_configuration(settings)
    database = await asyncio.to_thread(check_database, settings)
    found += database
    if not any(f.failed for f in database):  # its tables exist only once migrated
        found += await asyncio.to_thread(check_destinations, settings)
    else:
        found.append(_skip("destinations", "broken", "needs a reachable, migrated database"))
    steps: list[tuple[str, Callable[[], Awaitable[list[Finding]]]]] = [
        ("slack", lambda: check_slack(settings.slack)),
        ("discord", lambda: check_discord(settings.discord)),
        ("yahoo", lambda: asyncio.to_thread(check_yahoo_rest, settings)),
        ("yahoo", lambda: check_yahoo_stream(settings)),
        ("news", lambda: check_news_feeds(settings)),
    ]
    for area, step in steps:
        try:
            async with asyncio.timeout(CHECK_TIMEOUT_SECONDS * 2):
                found += await step()
        except TimeoutError:
            found.append(_fail(area, "answer", "no answer in time", "check the network"))
    return found


def findings_table(findings: Sequence[Finding]) -> Table:
    from rich.table import Table

    table = Table(title="marketbot doctor", show_lines=False)
    for column in ("area", "check", "status", "detail", "fix"):
        table.add_column(column, overflow="fold")
    style = {"pass": "[green]pass[/]", "fail": "[bold red]FAIL[/]", "skip": "[dim]skip[/]"}
    for f in findings:
        table.add_row(f.area, f.check, style[f.status], f.detail, f.fix)
    return table
