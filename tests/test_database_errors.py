"""A wrong or unreachable database: one line (exit 2 or 1), `run` waits, a traceback on --debug."""

from __future__ import annotations

import logging
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from bot.database import DatabaseUnavailable, open_store, safe_url, wait_for_store
from bot.settings import Settings, SettingsError, load_settings
from tests.test_cli import ROOT, marketbot


@pytest.mark.parametrize(
    ("url", "says"),
    [
        ("nosuchdb://x", "unknown database driver 'nosuchdb'"),
        ("not a url", "not a database URL"),
        ("mysql://u@h/x", "supports SQLite and PostgreSQL, not mysql"),
    ],
)
def test_invalid_url_is_a_settings_error(
    monkeypatch: pytest.MonkeyPatch, url: str, says: str
) -> None:
    monkeypatch.setenv("MARKETBOT_DATABASE_URL", url)
    with pytest.raises(SettingsError) as caught:
        load_settings()
    message = str(caught.value)
    assert "MARKETBOT_DATABASE_URL" in message
    assert says in message
    assert "\n" not in message


def test_password_is_never_shown(tmp_path: Path) -> None:
    url = "postgresql+psycopg://bot:s3cret-pw@127.0.0.1:1/x"
    assert "s3cret-pw" not in safe_url(url)
    settings = Settings.model_validate({"database_url": url})
    with pytest.raises(DatabaseUnavailable) as caught:
        open_store(settings)
    assert "s3cret-pw" not in str(caught.value)
    assert "127.0.0.1:1" in str(caught.value)


def _missing_dir_url(tmp_path: Path) -> tuple[Path, str]:
    # SQLite cannot create a file in a folder that does not exist: "unreachable" offline.
    folder = tmp_path / "not-yet"
    return folder, f"sqlite:///{folder / 'mb.db'}"


def test_one_shot_commands_fail_fast_in_one_line(tmp_path: Path) -> None:
    _, url = _missing_dir_url(tmp_path)
    for args in (["cmd", "/watchlist"], ["db", "upgrade"]):
        result = marketbot(*args, cwd=tmp_path, env={"MARKETBOT_DATABASE_URL": url})
        assert result.returncode == 1, result.stderr
        lines = result.stderr.strip().splitlines()
        assert len(lines) == 1, result.stderr
        assert lines[0].startswith("marketbot: database unreachable at sqlite:///")
        assert "MARKETBOT_DATABASE_URL" in lines[0]


def test_invalid_url_exits_2_without_traceback(tmp_path: Path) -> None:
    for args in (["cmd", "/watchlist"], ["run"], ["db", "upgrade"]):
        result = marketbot(*args, cwd=tmp_path, env={"MARKETBOT_DATABASE_URL": "nosuchdb://x"})
        assert result.returncode == 2
        assert result.stderr.strip().splitlines() == [
            "marketbot: invalid setting MARKETBOT_DATABASE_URL: Value error, unknown database "
            "driver 'nosuchdb'; expected sqlite:///marketbot.db or "
            "postgresql+psycopg://USER@HOST:5432/DB"
        ]


def test_debug_shows_the_traceback(tmp_path: Path) -> None:
    _, url = _missing_dir_url(tmp_path)
    result = marketbot(
        "--debug", "cmd", "/watchlist", cwd=tmp_path, env={"MARKETBOT_DATABASE_URL": url}
    )
    assert result.returncode == 1
    assert "Traceback (most recent call last)" in result.stderr
    assert "DatabaseUnavailable" in result.stderr


async def test_wait_for_store_warns_once_then_backs_off_quietly(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    folder, url = _missing_dir_url(tmp_path)
    settings = Settings.model_validate({"database_url": url})
    delays: list[float] = []

    async def sleep(seconds: float) -> None:
        delays.append(seconds)
        if len(delays) == 4:
            folder.mkdir()  # the database "comes up"

    caplog.set_level(logging.DEBUG, logger="marketbot")
    store = await wait_for_store(settings, sleep=sleep)
    store.close()
    assert len(delays) == 4
    assert max(delays) <= 30  # doubling from 1 s, with jitter, capped
    assert delays[-1] > delays[0]
    warnings = [r for r in caplog.records if r.levelno >= logging.WARNING]
    assert len(warnings) == 1
    assert "database unreachable" in warnings[0].getMessage()
    assert "retrying with backoff" in warnings[0].getMessage()
    assert any("reachable after 5 tries" in r.getMessage() for r in caplog.records)


async def test_wait_for_store_gives_up_after_bounded_attempts(tmp_path: Path) -> None:
    _, url = _missing_dir_url(tmp_path)
    settings = Settings.model_validate({"database_url": url})

    async def sleep(seconds: float) -> None:
        return None

    with pytest.raises(DatabaseUnavailable):
        await wait_for_store(settings, sleep=sleep, attempts=3)


def test_run_waits_for_the_database_and_starts_when_it_answers(tmp_path: Path) -> None:
    folder, url = _missing_dir_url(tmp_path)
    env = {k: v for k, v in os.environ.items() if not k.startswith("MARKETBOT_")}
    env.update(
        PYTHONPATH=str(ROOT),
        MARKETBOT_DATABASE_URL=url,
        MARKETBOT_YAHOO__BASE_URL="http://127.0.0.1:9",  # discard port: nothing answers
        MARKETBOT_YAHOO__STREAM_ENABLED="false",
        MARKETBOT_CONSOLE="false",
    )
    proc = subprocess.Popen(
        [sys.executable, "-m", "bot.cli", "run"],
        cwd=tmp_path,
        env=env,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert proc.stderr is not None
        first = proc.stderr.readline()
        assert "database unreachable" in first, first
        assert proc.poll() is None  # still waiting, not crashed
        folder.mkdir()
        deadline = time.monotonic() + 60
        lines = []
        while time.monotonic() < deadline:
            line = proc.stderr.readline()
            lines.append(line)
            if "marketbot started" in line or not line:
                break
        assert any("marketbot started" in line for line in lines), lines
    finally:
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=30)
    assert proc.returncode == 0, err
    # Waiting for the database is quiet: one line, no traceback, until the bot is up. (What
    # the shutdown itself logs is the scheduler's business, not this test's.)
    assert "Traceback" not in first + "".join(lines)
