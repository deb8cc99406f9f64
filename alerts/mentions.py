"""Make user- and feed-supplied text unable to ping anyone on Slack or Discord, and fit limits."""

from __future__ import annotations

import re
from collections.abc import Callable

# A zero-width space breaks a mention token for the platform's parser while the reader still
# sees the same characters; it is the smallest change that keeps headlines readable.
ZWSP = "\u200b"

# Words that notify a whole channel when a platform parses them as plain text.
_BROADCAST = re.compile(r"@(everyone|here|channel|group|all)\b", re.IGNORECASE)

# Control characters other than newline and tab: they can hide text or break layouts.
_CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f\u202a-\u202e\u2066-\u2069]")

# Discord's angle-bracket tokens: users <@1>, <@!1>, roles <@&1>, channels <#1>, slash
# commands </name:1>, and Slack's <!here>, <@U1>, <#C1> when a Slack text object is plain.
_ANGLE_TOKEN = re.compile(r"<(?=[@#!/&^])")

# Discord markdown characters that change meaning anywhere in a line.
_DISCORD_INLINE = re.compile(r"([\\*_~`|\[\]])")
# ... and those that only matter at the start of a line (quotes, headings, lists).
_DISCORD_LINE_START = re.compile(r"^(\s*)([>#\-+]|\d+\.)", re.MULTILINE)


def clean(text: str) -> str:
    """Drop control characters (bidi overrides included) that could disguise text."""
    return _CONTROL.sub("", text)


def _break_broadcasts(text: str) -> str:
    return _BROADCAST.sub(lambda m: "@" + ZWSP + m.group(1), text)


def slack_mrkdwn(text: str) -> str:
    """Escape for a Slack ``mrkdwn`` text object: no ``<!here>``, ``<@U..>``, ``@channel``.

    Slack's own escaping (``&``, ``<``, ``>``) removes every ``<...>`` control sequence, so
    ``<!channel>``, ``<!subteam^S1>``, ``<@U1>`` and ``<#C1>`` show as text; broadcast words
    written without brackets get a zero-width space in case ``link_names`` is ever enabled.
    """
    text = clean(text).replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
    return _break_broadcasts(text)


def slack_plain(text: str) -> str:
    """Text for a Slack ``plain_text`` object: Slack shows it literally, so no entity escaping."""
    return _break_broadcasts(_ANGLE_TOKEN.sub("<" + ZWSP, clean(text)))


def discord_markdown(text: str, *, escape_markdown: bool = True) -> str:
    """Neutralise Discord mentions (``@everyone``, ``<@1>``, ``<@&1>``, ``<#1>``) and markdown.

    ``allowed_mentions`` is the second line of defence; this one also keeps the *look* of a
    mention out of alerts, so nobody mistakes a headline for a ping.
    """
    text = clean(text)
    if escape_markdown:
        text = _DISCORD_INLINE.sub(r"\\\1", text)
        text = _DISCORD_LINE_START.sub(lambda m: m.group(1) + "\\" + m.group(2), text)
    text = _ANGLE_TOKEN.sub("<" + ZWSP, text)
    return _break_broadcasts(text)


def console_text(text: str) -> str:
    """Terminal text: only control characters matter (an escape sequence can redraw a screen)."""
    return clean(text)


def has_ping(text: str, platform: str) -> bool:
    """Whether ``text`` would notify someone on ``platform`` (``slack`` or ``discord``).

    Used by tests and as a last assertion before sending; it errs on the side of ``True``.
    """
    if _BROADCAST.search(text):
        return True
    if platform == "slack":
        return re.search(r"<[!@#]|<\s*!", text) is not None
    return re.search(r"<(@[!&]?\d|#\d|/[^>]*:\d)", text) is not None


def fit(
    text: str, limit: int, escape: Callable[[str], str] | None = None, marker: str = "…"
) -> str:
    """``text`` escaped with ``escape`` and cut to at most ``limit`` characters, never in the
    middle of an escape.

    The cut is made on the raw text and re-escaped, so ``&amp;`` or ``\\*`` cannot be split.
    ``escape`` is one of this module's escapes; ``None`` for text the renderer has already
    escaped (its own markup around escaped values), which is cut as it stands. The renderer
    says so as data instead of handing in a do-nothing function of its own: this module never
    calls back into a renderer.
    """
    escaped = text if escape is None else escape(text)
    if len(escaped) <= limit:
        return escaped
    if limit <= len(marker):
        return marker[:limit]
    low, high = 0, len(text)
    best = marker
    while low <= high:
        mid = (low + high) // 2
        cut = text[:mid].rstrip()
        candidate = (cut if escape is None else escape(cut)) + marker
        if len(candidate) <= limit:
            best = candidate
            low = mid + 1
        else:
            high = mid - 1
    return best
