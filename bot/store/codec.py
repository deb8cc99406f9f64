"""Turns core value objects into JSON-safe dicts for the database, and back."""

from __future__ import annotations

from dataclasses import asdict
from datetime import datetime
from typing import Any

from alerts.models import Alert, AlertKind, MarketSession, Severity


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
