"""Log setup for long-running commands: text or one JSON object per line, secrets redacted."""

from __future__ import annotations

import json
import logging
import sys
from collections.abc import Iterable
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Literal, TextIO

if TYPE_CHECKING:
    from bot.settings import Settings

TEXT_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"
REDACTED = "***"
MIN_SECRET_LENGTH = 6  # shorter "secrets" would redact ordinary words
# Attributes every LogRecord has; anything else was passed with ``extra=`` and is kept in JSON.
_STANDARD_ATTRS = set(vars(logging.makeLogRecord({}))) | {"message", "asctime", "taskName"}


class JsonFormatter(logging.Formatter):
    """One JSON object per line: time (UTC, ISO 8601), level, logger, message, and extras."""

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, object] = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        for key, value in vars(record).items():
            if key not in _STANDARD_ATTRS and not key.startswith("_"):
                entry[key] = value if isinstance(value, str | int | float | bool) else repr(value)
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        return json.dumps(entry, ensure_ascii=False)


class RedactingFormatter(logging.Formatter):
    """Replaces every configured secret in the finished line, tracebacks included.

    Redacting the formatted text (not the message template) also catches a token that reached
    a log through a library's exception text or a repr of a request.
    """

    def __init__(self, inner: logging.Formatter, secrets: Iterable[str]) -> None:
        super().__init__()
        self.inner = inner
        # Longest first, so a secret containing another is replaced whole.
        self.secrets = sorted(
            {s for s in secrets if len(s) >= MIN_SECRET_LENGTH}, key=len, reverse=True
        )

    def format(self, record: logging.LogRecord) -> str:
        text = self.inner.format(record)
        for secret in self.secrets:
            text = text.replace(secret, REDACTED)
        return text


def secret_values(settings: Settings) -> list[str]:
    """Every secret the settings hold: platform tokens and the database password."""
    from sqlalchemy.engine import make_url

    from bot.settings import SECRET_FIELDS

    found: list[str] = []
    for section, key in SECRET_FIELDS:
        value = getattr(getattr(settings, section), key, None)
        if value is not None:
            found.append(value.get_secret_value())
    password = make_url(settings.database_url).password
    if password:
        found.append(str(password))
    return found


def configure_logging(
    level: str,
    fmt: Literal["text", "json"] = "text",
    *,
    secrets: Iterable[str] = (),
    stream: TextIO | None = None,
) -> logging.Handler:
    """Replace the root handlers with one on stderr; returns it (tests remove it again)."""
    handler = logging.StreamHandler(stream or sys.stderr)
    inner = JsonFormatter() if fmt == "json" else logging.Formatter(TEXT_FORMAT)
    handler.setFormatter(RedactingFormatter(inner, secrets))
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(level)
    effective = logging.getLevelName(level)
    # APScheduler logs every run of every job at INFO: seconds-apart noise in the terminal.
    for noisy in ("apscheduler", "alembic"):
        logging.getLogger(noisy).setLevel(max(logging.WARNING, effective))
    # yfinance warns on every failed cookie/crumb fetch (every poll while Yahoo is down); the
    # poller classifies those failures itself and the market loop says so once.
    logging.getLogger("yfinance").setLevel(
        logging.DEBUG if effective <= logging.DEBUG else logging.CRITICAL
    )
    return handler


def configure_from_settings(settings: Settings) -> logging.Handler:
    return configure_logging(
        settings.log_level, settings.log_format, secrets=secret_values(settings)
    )
