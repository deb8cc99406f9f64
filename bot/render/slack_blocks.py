"""AlertMessage -> Slack Block Kit message (blocks + plain fallback text), within Slack's limits."""

from __future__ import annotations

from datetime import tzinfo
from typing import Any

from alerts.mentions import fit, slack_mrkdwn, slack_plain
from alerts.models import AlertMessage, NewsItem
from bot.render import format as fmt

MAX_BLOCKS = 50
SECTION_TEXT = 3000
HEADER_TEXT = 150
CONTEXT_ELEMENTS = 10
FALLBACK_TEXT = 3000  # Slack truncates `text` past 40k; notifications show far less
MAX_HEADLINES = 5

Block = dict[str, Any]


def _mrkdwn(text: str) -> dict[str, str]:
    return {"type": "mrkdwn", "text": text}


def _section(text: str) -> Block:
    return {"type": "section", "text": _mrkdwn(text)}


def _safe_url(url: str | None) -> str | None:
    # A URL goes inside <url|label>: anything that could close or split that token is refused.
    if not url or not url.startswith(("https://", "http://")):
        return None
    if any(ch in url for ch in "<>| \n\t"):
        return None
    return url.replace("&", "&amp;")


MARKUP = fmt.Markup(escape=slack_mrkdwn, bold="*", italic="_", indent=" " * 8)


def alert_line(message: AlertMessage, index: int) -> str:
    return fit(fmt.alert_line(message, index, MARKUP), SECTION_TEXT)


def _pack_sections(lines: list[str], max_sections: int) -> tuple[list[Block], int]:
    """Pack lines into as few sections as fit 3000 chars each; returns blocks and lines left out."""
    sections: list[list[str]] = []
    used = 0
    for line in lines:
        if sections and len("\n".join([*sections[-1], line])) <= SECTION_TEXT:
            sections[-1].append(line)
        elif len(sections) < max_sections:
            sections.append([line])
        else:
            break
        used += 1
    return [_section("\n".join(chunk)) for chunk in sections], len(lines) - used


def _headline_line(item: NewsItem, when: str | None = None) -> str:
    title = fit(item.title, 500, slack_mrkdwn)
    url = _safe_url(item.url)
    text = f"<{url}|{title}>" if url else title
    if item.source:
        text += f" — {slack_mrkdwn(item.source)}"
    if when:
        text += f" · _{slack_mrkdwn(when)}_"
    return f"• {text}"


def render_blocks(message: AlertMessage, tz: tzinfo | None = None) -> dict[str, Any]:
    """The ``chat.postMessage`` body minus ``channel``: ``{"text": ..., "blocks": [...]}``."""
    tz = tz or fmt.zone(None)
    blocks: list[Block] = []
    title = f"{fmt.SEVERITY_EMOJI[message.severity]} {message.title}"
    blocks.append(
        {
            "type": "header",
            "text": {"type": "plain_text", "text": fit(title, HEADER_TEXT, slack_plain)},
        }
    )

    tail: list[Block] = []
    if message.context:
        futures = " · ".join(slack_mrkdwn(fmt.context_text(c)) for c in message.context)
        tail.append({"type": "context", "elements": [_mrkdwn(fit(f"*Market* {futures}", 3000))]})
    if message.headlines:
        lines = [
            _headline_line(item, message.headline_times.get(item.key))
            for item in message.headlines[:MAX_HEADLINES]
        ]
        hidden = len(message.headlines) - MAX_HEADLINES
        if hidden > 0:
            lines.append(fmt.more_marker(hidden))
        news = "*News*\n" + "\n".join(lines)
        tail.append({"type": "divider"})
        tail.append(_section(fit(news, SECTION_TEXT)))
    elif message.news_note:
        tail.append(_section(fit(f"*News* _{slack_mrkdwn(message.news_note)}_", 3000)))
    footer_bits = [fmt.when(message.at, tz)]
    if message.footer:
        footer_bits.append(slack_mrkdwn(message.footer))
    tail.append({"type": "context", "elements": [_mrkdwn(fit(" · ".join(footer_bits), 3000))]})

    lines = [alert_line(message, i) for i in range(len(message.alerts))]
    # One block stays free for the "… and N more" marker.
    room = MAX_BLOCKS - len(blocks) - len(tail) - 1
    sections, hidden = _pack_sections(lines, room)
    blocks.extend(sections)
    if hidden:
        blocks.append({"type": "context", "elements": [_mrkdwn(f"*{fmt.more_marker(hidden)}*")]})
    blocks.extend(tail)
    return {"text": fallback_text(message), "blocks": blocks}


def fallback_text(message: AlertMessage) -> str:
    """What notifications and screen readers show: the title and the moves, no markup."""
    moves = ", ".join(
        f"{a.symbol} {fmt.pct(a.change_pct)}" if a.change_pct is not None else a.symbol
        for a in message.alerts
    )
    text = f"{message.title}: {moves}" if moves else message.title
    return fit(text, FALLBACK_TEXT, slack_mrkdwn)
