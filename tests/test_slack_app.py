"""Slack front end against the loopback fake: Socket Mode and HTTP mode, real Bolt and SDK."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Sequence
from datetime import UTC, datetime
from pathlib import Path
from urllib.parse import urlencode

import aiohttp
import pytest
from pydantic import SecretStr
from slack_sdk.signature import SignatureVerifier

from alerts.commands import COMMANDS, CommandContext, CommandRouter, CommandSpec, Reply
from alerts.mentions import has_ping
from alerts.ports import ManualClock
from bot.fakes.slack_server import FakeSlack, SlackSpecValidator
from bot.settings import SlackSettings
from bot.slack.app import SlackService

SPEC = Path(__file__).resolve().parents[2] / "shared" / "specs" / "slack-web-openapi-v2.json"
SECRET = "8f742231b10e8888abcd99yyyzzz85a5"


class RecordingRouter:
    """The command layer's shape, recording what the adapter passes it (our own boundary)."""

    def __init__(self, answer: str = "Watching *NVDA*: alert on `drop 10%`.") -> None:
        self.calls: list[tuple[str, CommandContext]] = []
        self.answer = answer

    def handle(self, text: str, ctx: CommandContext) -> Reply:
        self.calls.append((text, ctx))
        if text.startswith("watch") and not ctx.can_manage:
            return Reply("You need Manage Channels.", ok=False)
        return Reply(self.answer, changed=text.startswith("watch"))

    def command_names(self) -> Sequence[CommandSpec]:
        return COMMANDS


@pytest.fixture
async def slack() -> AsyncIterator[FakeSlack]:
    validator = SlackSpecValidator(SPEC) if SPEC.exists() else None
    async with FakeSlack(validator=validator) as fake:
        yield fake
    assert fake.validation_errors == []


def _settings(fake: FakeSlack, **extra: object) -> SlackSettings:
    return SlackSettings(
        bot_token=SecretStr(fake.bot_token),
        app_token=SecretStr(fake.app_token),
        api_url=fake.api_url,
        **extra,  # type: ignore[arg-type]
    )


async def test_socket_mode_slash_command_end_to_end(slack: FakeSlack) -> None:
    router = RecordingRouter()
    service = SlackService(_settings(slack, command_prefix="mb-"), router)
    await service.start()
    try:
        ack = await slack.slash_command("/mb-watch", "NVDA drop 10%", channel_id="C42")
        responses = await slack.wait_for_responses(1)
    finally:
        await service.close()
    assert ack["envelope_id"].startswith("env-")
    assert [text for text, _ in router.calls] == ["watch NVDA drop 10%"]
    ctx = router.calls[0][1]
    assert (ctx.channel, ctx.user, ctx.platform) == ("slack:C42", "slack:U0ALICE", "slack")
    assert responses[0]["text"] == "Watching *NVDA*: alert on `drop 10%`."
    assert responses[0]["response_type"] == "in_channel"
    assert slack.calls("apps.connections.open")
    assert any(r.path == "/link" for r in slack.requests)


async def test_socket_mode_unprefixed_command_is_not_ours(slack: FakeSlack) -> None:
    router = RecordingRouter()
    service = SlackService(_settings(slack, command_prefix="mb-"), router)
    await service.start()
    try:
        # Bolt acks only what a listener handled; Slack would show the user an error.
        with pytest.raises(TimeoutError):
            await slack.send_envelope(
                "slash_commands", slack.slash_payload("/watch", "NVDA"), within=0.5
            )
        ok = await slack.slash_command("/mb-help", "")
        await slack.wait_for_responses(1)
    finally:
        await service.close()
    assert "envelope_id" in ok
    assert [text for text, _ in router.calls] == ["help"]
    assert slack.responses[0]["response_type"] == "ephemeral"


async def test_umbrella_command_reaches_every_command(slack: FakeSlack) -> None:
    router = RecordingRouter()
    service = SlackService(_settings(slack), router)
    await service.start()
    try:
        await slack.slash_command("/marketbot", "watch NVDA drop 5%")
        await slack.slash_command("/marketbot", "mute NVDA 2h")  # /mute itself is Slack's
        await slack.slash_command("/marketbot", "")
        await slack.wait_for_responses(3)
        # Not registered (Slack's built-in): Bolt has no listener, so nothing is acked.
        with pytest.raises(TimeoutError):
            await slack.send_envelope(
                "slash_commands", slack.slash_payload("/mute", "x"), within=0.3
            )
    finally:
        await service.close()
    assert [text for text, _ in router.calls] == ["watch NVDA drop 5%", "mute NVDA 2h", "help"]


async def test_reply_cannot_ping_the_channel(slack: FakeSlack) -> None:
    router = RecordingRouter(answer="Basket <!channel> @here <@U1> saved")
    service = SlackService(_settings(slack), router)
    await service.start()
    try:
        await slack.slash_command("/basket", "create <!channel> NVDA")
        responses = await slack.wait_for_responses(1)
    finally:
        await service.close()
    assert not has_ping(responses[0]["text"], "slack")
    assert "&lt;!channel&gt;" in responses[0]["text"]


async def test_real_command_router_through_socket_mode(slack: FakeSlack, tmp_path: Path) -> None:
    from bot.store.sql import SqlStore

    store = SqlStore(f"sqlite:///{tmp_path / 'mb.db'}")
    store.upgrade()
    router = CommandRouter(store, ManualClock(datetime(2025, 1, 27, 9, tzinfo=UTC)))
    service = SlackService(_settings(slack), router)
    await service.start()
    try:
        await slack.slash_command("/watch", "nvda drop 10% -- <!here> earnings", channel_id="C9")
        await slack.wait_for_responses(1)
    finally:
        await service.close()
        store.close()
    watches = SqlStore(f"sqlite:///{tmp_path / 'mb.db'}").list_watches("slack:C9")
    assert [(w.target, w.rule_text) for w in watches] == [("NVDA", "drop 10%")]
    assert "NVDA" in slack.responses[0]["text"]


async def test_near_miss_and_help_name_no_command_slack_lacks(
    slack: FakeSlack, tmp_path: Path
) -> None:
    # /pingrole needs role pings, which Slack does not offer: it is neither suggested for a
    # typo nor listed, through the real router and the adapter's own features.
    from bot.store.sql import SqlStore

    store = SqlStore(f"sqlite:///{tmp_path / 'mb.db'}")
    store.upgrade()
    router = CommandRouter(store, ManualClock(datetime(2025, 1, 27, 9, tzinfo=UTC)))
    service = SlackService(_settings(slack), router)
    await service.start()
    try:
        await slack.slash_command("/marketbot", "pingrol off")
        await slack.slash_command("/marketbot", "help pingrol")
        await slack.slash_command("/marketbot", "")
        await slack.wait_for_responses(3)
    finally:
        await service.close()
        store.close()
    typo, help_typo, listing = (r["text"] for r in slack.responses)
    assert "Unknown command `/pingrol`" in typo
    assert "Did you mean" not in typo
    assert "Did you mean" not in help_typo
    assert "`/watch" in listing
    assert "pingrole" not in typo + help_typo + listing


# ------------------------------------------------------------------------- HTTP mode


def _signed(body: str, *, secret: str = SECRET, age: int = 0) -> dict[str, str]:
    # Bolt checks the timestamp against the wall clock, so "old" must be old in real time.
    ts = str(int(time.time()) - age)
    signature = SignatureVerifier(secret).generate_signature(timestamp=ts, body=body)
    return {
        "X-Slack-Request-Timestamp": ts,
        "X-Slack-Signature": signature,
        "Content-Type": "application/x-www-form-urlencoded",
    }


@pytest.fixture
async def http_service(slack: FakeSlack) -> AsyncIterator[tuple[SlackService, RecordingRouter]]:
    router = RecordingRouter()
    settings = _settings(slack, mode="http", signing_secret=SecretStr(SECRET))
    service = SlackService(settings, router, host="127.0.0.1", port=0)
    await service.start()
    yield service, router
    await service.close()


async def _post(service: SlackService, body: str, headers: dict[str, str]) -> int:
    url = f"http://127.0.0.1:{service.port}/slack/events"
    async with (
        aiohttp.ClientSession() as session,
        session.post(url, data=body.encode(), headers=headers) as resp,
    ):
        await resp.read()
        return resp.status


async def test_http_mode_signed_request_runs(
    slack: FakeSlack, http_service: tuple[SlackService, RecordingRouter]
) -> None:
    service, router = http_service
    body = urlencode(slack.slash_payload("/watch", "AMD drop 5%"))
    assert await _post(service, body, _signed(body)) == 200
    responses = await slack.wait_for_responses(1)
    assert [text for text, _ in router.calls] == ["watch AMD drop 5%"]
    assert responses[0]["text"].startswith("Watching")


@pytest.mark.parametrize(
    ("case", "expected"),
    [("wrong secret", 401), ("replayed", 401), ("unsigned", 401), ("malformed", 404)],
)
async def test_http_mode_bad_requests_never_reach_the_handler(
    slack: FakeSlack,
    http_service: tuple[SlackService, RecordingRouter],
    case: str,
    expected: int,
) -> None:
    service, router = http_service
    body = urlencode(slack.slash_payload("/watch", "AMD"))
    if case == "wrong secret":
        headers = _signed(body, secret="not-the-secret")
    elif case == "replayed":
        headers = _signed(body, age=6 * 60)
    elif case == "unsigned":
        headers = {"Content-Type": "application/x-www-form-urlencoded"}
    else:
        body = "%%%not=a&slash command\x00"
        headers = _signed(body)
    assert await _post(service, body, headers) == expected
    assert router.calls == []
    assert slack.responses == []


def test_http_mode_needs_a_signing_secret() -> None:
    settings = SlackSettings(bot_token=SecretStr("xoxb-x"), mode="http")
    with pytest.raises(ValueError, match="SIGNING_SECRET"):
        SlackService(settings, RecordingRouter())


async def test_requests_match_slack_openapi(slack: FakeSlack) -> None:
    if not SPEC.exists():
        pytest.skip("../shared/specs/slack-web-openapi-v2.json not present")
    service = SlackService(_settings(slack), RecordingRouter())
    await service.start()
    try:
        await slack.slash_command("/marketbot", "price NVDA")
        await slack.wait_for_responses(1)
    finally:
        await service.close()
    assert isinstance(slack.validator, SlackSpecValidator)
    assert "auth.test" in slack.validator.checked


async def test_run_slack_serves_until_stopped(slack: FakeSlack) -> None:
    import asyncio

    from bot.slack.app import run_slack

    router = RecordingRouter()
    stop = asyncio.Event()
    task = asyncio.create_task(run_slack(_settings(slack), router, stop=stop))
    await slack.slash_command("/watchlist", "")
    await slack.wait_for_responses(1)
    stop.set()
    await asyncio.wait_for(task, 5)
    assert [text for text, _ in router.calls] == ["watchlist"]
