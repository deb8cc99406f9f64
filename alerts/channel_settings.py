"""A channel's own settings, as its commands chose them: the daily digest, recovery notices,
the role its critical alerts notify.

Stored as one JSON object per channel, under the key names of the fields below (the format
every earlier version wrote). Reading never fails: a value stored by another version or edited
by hand reads as that field's default (and the store says so in its log); keys this version does not
know are kept as they are when the channel's settings are written back.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, fields
from datetime import date, time
from typing import Any

from alerts.digest import DigestSettingError, parse_digest_time, parse_zone


@dataclass(frozen=True, slots=True)
class ChannelSettings:
    digest: time | None = None  # post the daily digest at this local time; None: no digest
    digest_zone: str | None = None  # IANA zone of ``digest``; None: the bot's zone
    digest_sent: date | None = None  # the last day whose digest went out
    resolved: bool | None = None  # announce recoveries; None: the bot's default
    # Opaque to the core: the platform adapter that offers role pings decides what it means.
    ping_role: str | None = None

    @classmethod
    def from_stored(cls, stored: object) -> tuple[ChannelSettings, list[str]]:
        """The settings a channel's stored JSON says, and a line per value that was unusable
        (that field reads as its default)."""
        if stored is None:
            return cls(), []
        if not isinstance(stored, Mapping):
            return cls(), [f"settings {_shown(stored)} are not a JSON object"]
        values: dict[str, Any] = {}
        problems: list[str] = []
        for name, read in _READERS.items():
            raw = stored.get(name)
            if raw is None:
                continue
            try:
                values[name] = read(raw)
            except (TypeError, ValueError, DigestSettingError) as exc:
                problems.append(f"{name}={_shown(raw)} is not valid ({exc})")
        return cls(**values), problems

    def to_stored(self) -> dict[str, object]:
        """Every field as JSON, None included, so that writing back clears what was unset."""
        return {
            "digest": f"{self.digest:%H:%M}" if self.digest is not None else None,
            "digest_zone": self.digest_zone,
            "digest_sent": self.digest_sent.isoformat() if self.digest_sent else None,
            "resolved": self.resolved,
            "ping_role": self.ping_role,
        }


def merged(stored: object, settings: ChannelSettings) -> dict[str, object]:
    """What to store: ``settings``, plus any key another version wrote that this one ignores."""
    kept = dict(stored) if isinstance(stored, Mapping) else {}
    return {**kept, **settings.to_stored()}


def _text(raw: object) -> str:
    if not isinstance(raw, str):
        raise TypeError(f"expected text, got {type(raw).__name__}")
    return raw


def _flag(raw: object) -> bool:
    if not isinstance(raw, bool):
        raise TypeError(f"expected true or false, got {type(raw).__name__}")
    return raw


_READERS: dict[str, Callable[[object], object]] = {
    "digest": lambda raw: parse_digest_time(_text(raw)),
    "digest_zone": lambda raw: parse_zone(_text(raw)),
    "digest_sent": lambda raw: date.fromisoformat(_text(raw)),
    "resolved": _flag,
    "ping_role": _text,
}
assert set(_READERS) == {f.name for f in fields(ChannelSettings)}


def _shown(raw: object) -> str:
    return repr(raw)[:100]
