"""Settings: environment over file over defaults; a bad value stops start-up with one line."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from bot.settings import SettingsError, load_settings

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(autouse=True)
def _clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    import os

    for name in list(os.environ):
        if name.startswith("MARKETBOT_"):
            monkeypatch.delenv(name)


def test_defaults_are_the_embedded_sqlite_and_console() -> None:
    settings = load_settings()
    assert settings.database_url == "sqlite:///marketbot.db"
    assert settings.console
    assert not settings.slack.enabled
    assert not settings.discord.enabled
    assert settings.alerts.default_rule == "drop 10%"


def test_the_documented_example_file_loads_with_the_defaults() -> None:
    assert load_settings(ROOT / "config" / "marketbot.example.toml") == load_settings()


def test_environment_beats_file_and_nests_with_double_underscore(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    config = tmp_path / "m.toml"
    config.write_text('digest_time = "09:00"\n[yahoo]\npoll_interval_seconds = 5\n')
    monkeypatch.setenv("MARKETBOT_DIGEST_TIME", "7:30")
    monkeypatch.setenv("MARKETBOT_SLACK__BOT_TOKEN", "xoxb-secret-value")
    settings = load_settings(config)
    assert settings.digest_time == "07:30"
    assert settings.yahoo.poll_interval_seconds == 5
    assert settings.slack.enabled
    assert "xoxb-secret-value" not in repr(settings)
    assert "xoxb-secret-value" not in str(settings)


@pytest.mark.parametrize(
    ("name", "value", "message"),
    [
        ("MARKETBOT_YAHOO__POLL_INTERVAL_SECONDS", "-1", "MARKETBOT_YAHOO__POLL_INTERVAL_SECONDS"),
        ("MARKETBOT_DIGEST_TIME", "25:00", "MARKETBOT_DIGEST_TIME: Value error, expected HH:MM"),
        ("MARKETBOT_TIMEZONE", "Mars/Olympus", "MARKETBOT_TIMEZONE"),
        ("MARKETBOT_LOG_LEVEL", "LOUD", "MARKETBOT_LOG_LEVEL"),
        ("MARKETBOT_SLACK__MODE", "carrier-pigeon", "MARKETBOT_SLACK__MODE"),
    ],
)
def test_an_invalid_setting_is_named(
    monkeypatch: pytest.MonkeyPatch, name: str, value: str, message: str
) -> None:
    monkeypatch.setenv(name, value)
    with pytest.raises(SettingsError, match=message.replace("(", r"\(")):
        load_settings()


def test_a_file_may_not_carry_secrets(tmp_path: Path) -> None:
    config = tmp_path / "m.toml"
    config.write_text('[discord]\ntoken = "abc"\n')
    with pytest.raises(SettingsError, match="MARKETBOT_DISCORD__TOKEN"):
        load_settings(config)


def test_unknown_and_unreadable_files(tmp_path: Path) -> None:
    bad = tmp_path / "m.toml"
    bad.write_text("bogus = 1\n")
    with pytest.raises(SettingsError, match="MARKETBOT_BOGUS: unknown setting"):
        load_settings(bad)
    broken = tmp_path / "b.toml"
    broken.write_text("[yahoo\n")
    with pytest.raises(SettingsError, match="not valid TOML"):
        load_settings(broken)
    with pytest.raises(SettingsError, match="no such file"):
        load_settings(tmp_path / "missing.toml")


def test_cli_stops_with_exit_2_and_one_line(tmp_path: Path) -> None:
    env = {"PATH": "/usr/bin:/bin", "MARKETBOT_DIGEST_TIME": "99:99", "HOME": str(tmp_path)}
    result = subprocess.run(
        [sys.executable, "-m", "bot.cli", "cmd", "/watchlist"],
        capture_output=True,
        text=True,
        env=env,
        cwd=tmp_path,
        check=False,
    )
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1
    assert "MARKETBOT_DIGEST_TIME" in lines[0]
    assert "Traceback" not in result.stderr


def test_the_flat_spelling_of_nested_settings_works_too(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MARKETBOT_SLACK_BOT_TOKEN", "xoxb-flat")
    monkeypatch.setenv("MARKETBOT_YAHOO_STREAM_URL", "ws://127.0.0.1:9/")
    monkeypatch.setenv("MARKETBOT_ALERTS_CONTEXT_SYMBOLS", '["NQ=F"]')
    monkeypatch.setenv("MARKETBOT_DISCORD_TOKEN", "flat")
    monkeypatch.setenv("MARKETBOT_DISCORD__TOKEN", "nested")
    settings = load_settings()
    assert settings.slack.bot_token is not None
    assert settings.slack.bot_token.get_secret_value() == "xoxb-flat"
    assert settings.yahoo.stream_url == "ws://127.0.0.1:9/"
    assert settings.alerts.context_symbols == ["NQ=F"]
    assert settings.discord.token is not None
    assert settings.discord.token.get_secret_value() == "nested"
