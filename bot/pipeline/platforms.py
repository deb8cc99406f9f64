"""Which ChatPlatform serves a channel; shared by delivery and notices."""

from __future__ import annotations

import hashlib
from collections.abc import Sequence

from alerts.ports import ChatPlatform


def platform_for(platforms: Sequence[ChatPlatform], channel: str) -> ChatPlatform | None:
    return next((p for p in platforms if p.handles(channel)), None)


def short_key(text: str) -> str:
    """A stable idempotency key that fits Discord's 25-character nonce."""
    return "mb-" + hashlib.sha256(text.encode()).hexdigest()[:20]
