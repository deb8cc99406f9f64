"""Renderers: golden DeepSeek payloads, platform limits for a 60-alert storm, no pings."""

from __future__ import annotations

import dataclasses
import json
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from alerts.mentions import has_ping
from alerts.models import NewsItem
from bot.fakes.alert_samples import deepseek_digest, deepseek_message, storm_message
from bot.render import render_payload
from bot.render.discord_embeds import embed_chars, render_embed_payload
from bot.render.slack_blocks import render_blocks

GOLDEN = Path(__file__).parent / "golden"
REGENERATE = os.environ.get("MARKETBOT_REGEN_GOLDEN") == "1"
SUFFIX = {"slack": "json", "discord": "json", "console": "txt"}


@pytest.mark.parametrize("platform", ["slack", "discord", "console"])
def test_deepseek_golden(platform: str) -> None:
    path = GOLDEN / f"deepseek-2025-01-27.{platform}.{SUFFIX[platform]}"
    rendered = render_payload(deepseek_message(), platform)  # type: ignore[arg-type]
    if REGENERATE:
        path.write_text(rendered + "\n", encoding="utf-8")
    assert path.exists(), "run with MARKETBOT_REGEN_GOLDEN=1 to create the golden file"
    assert rendered + "\n" == path.read_text(encoding="utf-8")


@pytest.mark.parametrize("platform", ["slack", "discord", "console"])
def test_deepseek_digest_golden(platform: str) -> None:
    path = GOLDEN / f"deepseek-2025-01-27-digest.{platform}.{SUFFIX[platform]}"
    rendered = render_payload(deepseek_digest(), platform)  # type: ignore[arg-type]
    if REGENERATE:
        path.write_text(rendered + "\n", encoding="utf-8")
    assert path.exists(), "run with MARKETBOT_REGEN_GOLDEN=1 to create the golden file"
    assert rendered + "\n" == path.read_text(encoding="utf-8")
    assert "TSLA" in rendered  # named as missing a quote


@pytest.mark.parametrize("platform", ["slack", "discord", "console"])
def test_deepseek_rendering_names_every_move(platform: str) -> None:
    rendered = render_payload(deepseek_message(), platform)  # type: ignore[arg-type]
    for needle in [
        "NVDA",
        "−13.0%",
        "124.08",
        "AVGO",
        "−12.9%",
        "AMD",
        "−6.3%",
        "MSFT",
        "−6.7%",
        "GOOGL",
        "−4.6%",
        "META",
        "−5.5%",
        "ASML.AS",
        "−10.6%",
        "NQ=F",
        "−4.3%",
        "20,950",
        "ES=F",
        "−2.5%",
        "YM=F",
        "−0.8%",
        "DeepSeek",
    ]:
        assert needle in rendered, needle


def test_slack_payload_pastes_into_block_kit_builder() -> None:
    payload = json.loads(render_payload(deepseek_message(), "slack"))
    assert set(payload) == {"text", "blocks"}
    assert payload["blocks"][0]["type"] == "header"
    assert all("type" in block for block in payload["blocks"])


def _slack_texts(payload: dict[str, Any]) -> Iterator[tuple[str, str]]:
    yield "fallback", payload["text"]
    for block in payload["blocks"]:
        if "text" in block:
            yield block["type"], block["text"]["text"]
        for element in block.get("elements", []):
            yield "context", element["text"]


def test_sixty_alerts_fit_slack_limits() -> None:
    payload = render_blocks(storm_message(60))
    blocks = payload["blocks"]
    assert len(blocks) <= 50
    assert len(payload["text"]) <= 3000
    for kind, text in _slack_texts(payload):
        limit = 150 if kind == "header" else 3000
        assert len(text) <= limit, (kind, len(text))
    everything = json.dumps(payload, ensure_ascii=False)
    # Everything shown or a visible marker for what was left out.
    shown = sum(everything.count(f"SYM{i:03d}.AS*") for i in range(60))
    if shown < 60:
        assert f"… and {60 - shown} more" in everything
    assert "… and 7 more" in everything  # 12 headlines, 5 shown


def test_sixty_alerts_fit_discord_limits() -> None:
    payload = render_embed_payload(storm_message(60))
    assert len(payload["content"]) <= 2000
    assert len(payload["embeds"]) <= 10
    assert sum(embed_chars(e) for e in payload["embeds"]) <= 6000
    for embed in payload["embeds"]:
        assert len(embed["title"]) <= 256
        assert len(embed.get("description", "")) <= 4096
        assert len(embed["footer"]["text"]) <= 2048
        assert len(embed.get("fields", [])) <= 25
        for field in embed.get("fields", []):
            assert 0 < len(field["name"]) <= 256
            assert 0 < len(field["value"]) <= 1024
    description = payload["embeds"][0]["description"]
    shown = description.count("**SYM")
    assert 0 < shown < 60
    assert description.endswith(f"… and {60 - shown} more")


@pytest.mark.parametrize("count", [0, 1, 49, 50, 51, 200])
def test_any_group_size_stays_within_limits(count: int) -> None:
    slack = render_blocks(storm_message(count))
    assert len(slack["blocks"]) <= 50
    assert all(len(t) <= 3000 for _, t in _slack_texts(slack))
    discord = render_embed_payload(storm_message(count))
    assert sum(embed_chars(e) for e in discord["embeds"]) <= 6000


HOSTILE = [
    "@everyone",
    "@here",
    "<!channel>",
    "<!here>",
    "<!everyone>",
    "<!subteam^S1>",
    "<@U0123>",
    "<@123456789012345678>",
    "<@!123456789012345678>",
    "<@&123456789012345678>",
    "<#C0123>",
    "<#123456789012345678>",
]


@pytest.mark.parametrize("form", HOSTILE)
def test_note_basket_and_headline_cannot_ping(form: str) -> None:
    base = deepseek_message()
    first = dataclasses.replace(base.alerts[0], note=f"buy {form} now", headline=f"{form} hot")
    message = dataclasses.replace(
        base,
        title=f"Basket {form}: 5 of 8 down",  # a basket name leads the group title
        alerts=(first, *base.alerts[1:]),
        headlines=(
            NewsItem(key="h", title=f"Wire {form} story", published=base.at, source=f"src {form}"),
        ),
        footer=f"note {form}",
    )
    slack = render_blocks(message)
    for _, text in _slack_texts(slack):
        assert not has_ping(text, "slack"), text
    discord = render_embed_payload(message)
    assert discord["allowed_mentions"] == {"parse": []}
    assert not has_ping(discord["content"], "discord")
    assert not has_ping(json.dumps(discord["embeds"], ensure_ascii=False), "discord")
    console = render_payload(message, "console")
    assert form in console  # the terminal shows text verbatim: nothing there can ping


def test_role_ping_is_the_only_allowed_mention() -> None:
    payload = render_embed_payload(deepseek_message(), role_ping=42)
    assert payload["content"] == "<@&42>"
    assert payload["allowed_mentions"] == {"parse": [], "roles": ["42"]}


def test_unknown_platform_is_refused() -> None:
    with pytest.raises(ValueError, match="unknown platform"):
        render_payload(deepseek_message(), "teams")  # type: ignore[arg-type]


@pytest.mark.parametrize("platform", ["slack", "discord", "console"])
def test_headline_timing_and_the_no_catalyst_note_are_rendered(platform: str) -> None:
    message = deepseek_message()
    [first, *_] = message.headlines
    timed = dataclasses.replace(message, headline_times={first.key: "14h before"})
    assert "14h before" in render_payload(timed, platform)  # type: ignore[arg-type]
    note = "No headline since the last close explains this move."
    bare = dataclasses.replace(message, headlines=(), news_note=note)
    rendered = render_payload(bare, platform)  # type: ignore[arg-type]
    assert note in rendered
    assert first.title not in rendered
