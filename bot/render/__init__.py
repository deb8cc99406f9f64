"""Turn an AlertMessage into what each platform posts; `render_payload` prints it for humans."""

from __future__ import annotations

import json
from typing import Literal

from alerts.models import AlertMessage

Platform = Literal["slack", "discord", "console"]


def render_payload(message: AlertMessage, platform: Platform, *, tz: str | None = None) -> str:
    """The exact payload marketbot would post, as text.

    Slack: the ``chat.postMessage`` body (``blocks`` pastes into Block Kit Builder, ``text`` is
    the notification fallback). Discord: the ``POST /channels/{id}/messages`` JSON body.
    Console: the terminal text. ``tz`` names the zone times are shown in (America/New_York).
    """
    # Imported here because the renderers import this package's `format` module.
    from bot.render import format as fmt

    zone = fmt.zone(tz)
    if platform == "slack":
        from bot.render.slack_blocks import render_blocks

        return json.dumps(render_blocks(message, zone), indent=2, ensure_ascii=False)
    if platform == "discord":
        from bot.render.discord_embeds import render_embed_payload

        return json.dumps(render_embed_payload(message, zone), indent=2, ensure_ascii=False)
    if platform == "console":
        from bot.render.console_text import render_text

        return render_text(message, zone)
    raise ValueError(f"unknown platform {platform!r}: expected slack, discord or console")


__all__ = ["Platform", "render_payload"]
