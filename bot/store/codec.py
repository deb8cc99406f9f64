"""Turns core value objects into JSON-safe dicts for the database, and back."""

from __future__ import annotations

from dataclasses import asdict
from datetime import datetime
from typing import Any

from alerts.models import (
    Alert,
    AlertKind,
    AlertMessage,
    ContextLine,
    MarketSession,
    NewsItem,
    Severity,
)


def alert_to_record(alert: Alert) -> dict[str, Any]:
    record = asdict(alert)
    record["at"] = alert.at.isoformat()
    record["kind"] = alert.kind.value
    record["severity"] = alert.severity.value
    record["session"] = alert.session.value if alert.session else None
    return record


def alert_from_record(record: dict[str, Any]) -> Alert:
    values = dict(record)
    values["at"] = datetime.fromisoformat(values["at"])
    values["kind"] = AlertKind(values["kind"])
    values["severity"] = Severity(values["severity"])
    values["session"] = MarketSession(values["session"]) if values.get("session") else None
    known = Alert.__dataclass_fields__
    # Records written by a newer version may carry fields this one does not know: drop them.
    return Alert(**{name: value for name, value in values.items() if name in known})


def message_to_record(message: AlertMessage) -> dict[str, Any]:
    """A composed message as stored in a notice's outbox row (posted as it was composed)."""
    return {
        "channel": message.channel,
        "title": message.title,
        "alerts": [alert_to_record(a) for a in message.alerts],
        "at": message.at.isoformat(),
        "context": [asdict(c) for c in message.context],
        "headlines": [
            {**asdict(n), "published": n.published.isoformat(), "symbols": list(n.symbols)}
            for n in message.headlines
        ],
        "footer": message.footer,
        "severity": message.severity.value,
        "extra": dict(message.extra),
        "headline_times": dict(message.headline_times),
        "news_note": message.news_note,
    }


def message_from_record(record: dict[str, Any]) -> AlertMessage:
    return AlertMessage(
        channel=record["channel"],
        title=record["title"],
        alerts=tuple(alert_from_record(a) for a in record.get("alerts", ())),
        at=datetime.fromisoformat(record["at"]),
        context=tuple(ContextLine(**c) for c in record.get("context", ())),
        headlines=tuple(
            NewsItem(
                key=n["key"],
                title=n["title"],
                published=datetime.fromisoformat(n["published"]),
                url=n.get("url"),
                source=n.get("source"),
                symbols=tuple(n.get("symbols", ())),
            )
            for n in record.get("headlines", ())
        ),
        footer=record.get("footer"),
        severity=Severity(record.get("severity", Severity.WARNING.value)),
        extra=dict(record.get("extra") or {}),
        headline_times=dict(record.get("headline_times") or {}),
        news_note=record.get("news_note"),
    )
