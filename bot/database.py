"""Opening the database: a bad URL is a settings error, an unreachable server one clear line.

``run`` and ``worker`` wait for the database with backoff (a compose stack starts it alongside
the bot); one-shot commands (``cmd``, ``db upgrade``, ``doctor``) fail at once.
"""

from __future__ import annotations

import asyncio
import logging
import random
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING

from sqlalchemy.engine import make_url
from sqlalchemy.exc import ArgumentError, DBAPIError, NoSuchModuleError

if TYPE_CHECKING:
    from bot.settings import Settings
    from bot.store import SqlStore

log = logging.getLogger("marketbot")

DATABASE_URL_SETTING = "MARKETBOT_DATABASE_URL"
URL_EXAMPLES = "sqlite:///marketbot.db or postgresql+psycopg://USER@HOST:5432/DB"
RETRY_FIRST_SECONDS = 1.0
RETRY_CAP_SECONDS = 30.0


class DatabaseUnavailable(Exception):
    """The database did not answer (or refused us); the message is one line, password hidden."""


def check_database_url(url: str) -> str:
    """The URL unchanged if SQLAlchemy can use it here; ``ValueError`` in one line otherwise.

    Checked when settings load, so ``nosuchdb://x`` stops with exit code 2 and the setting's
    name instead of a SQLAlchemy traceback at first use.
    """
    try:
        parsed = make_url(url)
    except ArgumentError:
        raise ValueError(f"not a database URL; expected {URL_EXAMPLES}") from None
    try:
        dialect = parsed.get_dialect()
    except NoSuchModuleError:
        raise ValueError(
            f"unknown database driver {parsed.drivername!r}; expected {URL_EXAMPLES}"
        ) from None
    if parsed.get_backend_name() not in ("sqlite", "postgresql"):
        raise ValueError(
            f"marketbot supports SQLite and PostgreSQL, not {parsed.get_backend_name()}; "
            f"expected {URL_EXAMPLES}"
        )
    try:
        dialect.import_dbapi()
    except ImportError as exc:
        hint = (
            " (pip install 'marketbot[postgres]')"
            if parsed.get_backend_name() == "postgresql"
            else ""
        )
        raise ValueError(
            f"driver {parsed.drivername!r} needs the Python module {exc.name or 'for it'}, "
            f"which is not installed{hint}; for PostgreSQL use postgresql+psycopg://"
        ) from None
    return url


def safe_url(url: str) -> str:
    """The URL as it may be printed: password replaced by ***."""
    try:
        return make_url(url).render_as_string(hide_password=True)
    except ArgumentError:
        return "(unparseable URL)"


def _reason(exc: DBAPIError) -> str:
    # The driver's own message, first line only ("connection refused", "password failed").
    text = str(exc.orig) if exc.orig is not None else str(exc)
    first = next((line.strip() for line in text.splitlines() if line.strip()), type(exc).__name__)
    return first[:300]


def open_store(settings: Settings) -> SqlStore:
    """Open the database and apply pending migrations (start-up always upgrades).

    Raises ``DatabaseUnavailable`` when it cannot be reached, with a one-line reason.
    """
    from bot.store import SqlStore

    store = SqlStore(settings.database_url)
    try:
        store.upgrade()
    except DBAPIError as exc:
        store.close()
        raise DatabaseUnavailable(
            f"database unreachable at {safe_url(settings.database_url)} "
            f"({DATABASE_URL_SETTING}): {_reason(exc)}"
        ) from exc
    return store


async def wait_for_store(
    settings: Settings,
    *,
    sleep: Callable[[float], Awaitable[object]] = asyncio.sleep,
    rng: random.Random | None = None,
    attempts: int | None = None,
) -> SqlStore:
    """``open_store`` until it answers: one warning when it does not, quiet backoff, one line
    when it is back. ``attempts`` bounds the tries (tests); ``None`` waits for ever."""
    rng = rng or random.Random()
    delay = RETRY_FIRST_SECONDS
    tries = 0
    while True:
        tries += 1
        try:
            store = await asyncio.to_thread(open_store, settings)
        except DatabaseUnavailable as exc:
            if attempts is not None and tries >= attempts:
                raise
            if tries == 1:
                log.warning("%s; retrying with backoff until it answers", exc)
            else:
                log.debug("database still unreachable (try %d): %s", tries, exc)
            # Jitter so a restarted stack does not hammer the database in step.
            await sleep(delay / 2 + rng.uniform(0, delay / 2))
            delay = min(RETRY_CAP_SECONDS, delay * 2)
            continue
        if tries > 1:
            log.info("database reachable after %d tries", tries)
        return store
