"""A throwaway PostgreSQL database for a test or a benchmark: created fresh, dropped after."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from contextlib import contextmanager


@contextmanager
def fresh_database(admin_url: str, *, prefix: str = "marketbot_test") -> Iterator[str]:
    """Yield the URL of a new, uniquely named, empty database on ``admin_url``'s server.

    Dropped afterwards, its sessions forced off (a worker thread may still hold one). A server
    that is configured but cannot create it is an error, never a reason to skip.
    """
    from sqlalchemy import create_engine, text
    from sqlalchemy.engine import make_url

    name = f"{prefix}_{uuid.uuid4().hex[:12]}"
    admin = create_engine(admin_url, isolation_level="AUTOCOMMIT")
    try:
        with admin.connect() as conn:
            conn.execute(text(f'CREATE DATABASE "{name}"'))
    except Exception as exc:
        admin.dispose()
        raise RuntimeError(f"cannot create a database at {admin_url!r}: {exc}") from exc
    try:
        yield make_url(admin_url).set(database=name).render_as_string(hide_password=False)
    finally:
        with admin.connect() as conn:
            conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()
