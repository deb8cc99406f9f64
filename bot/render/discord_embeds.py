"""AlertMessage -> Discord message JSON (embed coloured by severity), within Discord's limits."""

from __future__ import annotations

from datetime import tzinfo
from typing import Any

from alerts.mentions import discord_markdown, fit
from alerts.models import AlertMessage, NewsItem, Severity
from bot.render import format as fmt

CONTENT = 2000
MAX_EMBEDS = 10
EMBED_TOTAL = 6000
TITLE = 256
DESCRIPTION = 4096
MAX_FIELDS = 25
FIELD_NAME = 256
FIELD_VALUE = 1024
FOOTER = 2048
MAX_HEADLINES = 5

COLOURS = {Severity.INFO: 0x3498DB, Severity.WARNING: 0xE67E22, Severity.CRITICAL: 0xE74C3C}


def _safe_url(url: str | None) -> str | None:
    if not url or not url.startswith(("https://", "http://")):
        return None
    # A ")" or whitespace would end the masked link early and leak the rest as text.
    if any(ch in url for ch in "() <>\n\t"):
        return None
    return url


MARKUP = fmt.Markup(escape=discord_markdown, bold="**", italic="*", indent="\u2003")


def alert_line(message: AlertMessage, index: int) -> str:
    return fmt.alert_line(message, index, MARKUP)


def _lines_within(lines: list[str], limit: int) -> str:
    """Join whole lines up to ``limit`` chars, ending with "… and N more" when some are left out."""
    out: list[str] = []
    for i, line in enumerate(lines):
        hidden = len(lines) - i - 1
        candidate = "\n".join([*out, line])
        marker = f"\n{fmt.more_marker(hidden)}" if hidden else ""
        if len(candidate) + len(marker) <= limit:
            out.append(line)
            continue
        hidden = len(lines) - i
        while out and len("\n".join(out)) + len(fmt.more_marker(hidden)) + 1 > limit:
            out.pop()
            hidden += 1
        return "\n".join([*out, fmt.more_marker(hidden)])
    return "\n".join(out)


def _headline_line(item: NewsItem, when: str | None = None) -> str:
    title = fit(item.title, 250, discord_markdown)
    url = _safe_url(item.url)
    text = f"[{title}]({url})" if url else title
    if item.source:
        text += f" — {discord_markdown(item.source)}"
    if when:
        text += f" · *{discord_markdown(when)}*"
    return f"• {text}"


def render_embed_payload(
    message: AlertMessage,
    tz: tzinfo | None = None,
    *,
    role_ping: int | None = None,
) -> dict[str, Any]:
    """The JSON body of ``POST /channels/{id}/messages`` minus ``nonce``.

    ``role_ping`` is the one way a message may notify anyone: the channel opted in to a role
    ping for severe alerts, and ``allowed_mentions`` then names that role and nothing else.
    """
    tz = tz or fmt.zone(None)
    title = fit(f"{fmt.SEVERITY_EMOJI[message.severity]} {message.title}", TITLE, discord_markdown)
    fields: list[dict[str, Any]] = []
    if message.context:
        value = _lines_within(
            [discord_markdown(fmt.context_text(c)) for c in message.context], FIELD_VALUE
        )
        fields.append({"name": "Market", "value": value, "inline": False})
    if message.headlines:
        lines = [
            _headline_line(item, message.headline_times.get(item.key))
            for item in message.headlines[:MAX_HEADLINES]
        ]
        hidden = len(message.headlines) - MAX_HEADLINES
        value = _lines_within(lines, FIELD_VALUE)
        if hidden > 0:
            value = _lines_within([*lines, fmt.more_marker(hidden)], FIELD_VALUE)
        fields.append({"name": "News", "value": value, "inline": False})
    elif message.news_note:
        note = fit(message.news_note, FIELD_VALUE, discord_markdown)
        fields.append({"name": "News", "value": f"*{note}*", "inline": False})
    footer_bits = [fmt.when(message.at, tz)]
    if message.footer:
        footer_bits.append(message.footer)
    footer = fit(
        " · ".join(footer_bits), FOOTER, lambda s: discord_markdown(s, escape_markdown=False)
    )

    used = len(title) + len(footer) + sum(len(f["name"]) + len(f["value"]) for f in fields)
    room = min(DESCRIPTION, EMBED_TOTAL - used)
    lines = [alert_line(message, i) for i in range(len(message.alerts))]
    description = _lines_within(lines, room) if lines else ""

    embed: dict[str, Any] = {
        "title": title,
        "color": COLOURS[message.severity],
        "footer": {"text": footer},
        "timestamp": message.at.isoformat(),
    }
    if description:
        embed["description"] = description
    if fields:
        embed["fields"] = fields[:MAX_FIELDS]
    payload: dict[str, Any] = {"embeds": [embed]}
    if role_ping is not None:
        payload["content"] = f"<@&{role_ping}>"
        payload["allowed_mentions"] = {"parse": [], "roles": [str(role_ping)]}
    else:
        payload["content"] = ""
        payload["allowed_mentions"] = {"parse": []}
    return payload


def embed_chars(embed: dict[str, Any]) -> int:
    """Characters Discord counts against the 6000 total of one message's embeds."""
    total = len(embed.get("title", "")) + len(embed.get("description", ""))
    total += len(embed.get("footer", {}).get("text", ""))
    total += len(embed.get("author", {}).get("name", ""))
    for field in embed.get("fields", []):
        total += len(field["name"]) + len(field["value"])
    return total
