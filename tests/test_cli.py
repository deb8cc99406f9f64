"""The `marketbot` command line as a user types it (subprocesses, the installed entry point)."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from bot.fakes.yahoo_server import FakeYahoo

ROOT = Path(__file__).resolve().parents[1]


def marketbot(
    *args: str, cwd: Path, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    base = {k: v for k, v in os.environ.items() if not k.startswith("MARKETBOT_")}
    return subprocess.run(
        [sys.executable, "-m", "bot.cli", *args],
        capture_output=True,
        text=True,
        cwd=cwd,
        env={**base, "PYTHONPATH": str(ROOT), "COLUMNS": "100", **(env or {})},
        timeout=120,
        check=False,
    )


@pytest.mark.parametrize(
    "command",
    [
        [],
        ["run"],
        ["replay"],
        ["cmd"],
        ["db", "upgrade"],
        ["slack-manifest"],
        ["discord-invite"],
        ["doctor"],
    ],
)
def test_every_command_has_help(tmp_path: Path, command: list[str]) -> None:
    result = marketbot(*command, "--help", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert "Usage" in result.stdout


def _known(fake: FakeYahoo) -> dict[str, str]:
    """The environment of a `marketbot cmd` whose new symbols are asked of the fake Yahoo."""
    fake.set_quote("NVDA", price=124.0, previous_close=142.62, name="NVIDIA Corporation")
    return {"MARKETBOT_YAHOO__BASE_URL": fake.base_url}


def test_cmd_and_db_upgrade_use_the_sqlite_file_in_the_working_directory(
    tmp_path: Path, fake_yahoo: FakeYahoo
) -> None:
    assert "database at revision 0" in marketbot("db", "upgrade", cwd=tmp_path).stdout
    added = marketbot("cmd", "/watch nvda drop 5%", cwd=tmp_path, env=_known(fake_yahoo))
    assert added.returncode == 0
    # Drawn, not raw: no Slack asterisks or backticks in the terminal.
    assert "Watching NVDA: alert on drop 5%" in added.stdout
    assert (tmp_path / "marketbot.db").is_file()
    listed = marketbot("cmd", "/watchlist", cwd=tmp_path)
    assert "NVDA" in listed.stdout
    assert "drop 5%" in listed.stdout
    other = marketbot("cmd", "/watchlist", "--channel", "slack:C9", cwd=tmp_path)
    assert "watches nothing" in other.stdout


def test_cmd_asks_yahoo_about_a_new_symbol_as_the_running_bot_does(
    tmp_path: Path, fake_yahoo: FakeYahoo
) -> None:
    # A typo accepted here would be watched by the running bot and never alert.
    env = _known(fake_yahoo)
    refused = marketbot("cmd", "/watch XYZNOTREAL", cwd=tmp_path, env=env)
    assert refused.returncode == 1, refused.stdout + refused.stderr
    assert "Yahoo does not know" in refused.stdout
    assert marketbot("cmd", "/watch NVDA", cwd=tmp_path, env=env).returncode == 0
    assert fake_yahoo.counts["chart"] == 2  # one question per new symbol
    listed = marketbot("cmd", "/watchlist", cwd=tmp_path, env=env)
    assert "NVDA" in listed.stdout
    assert "XYZNOTREAL" not in listed.stdout


def test_a_bad_command_exits_1_with_one_line(tmp_path: Path) -> None:
    result = marketbot("cmd", "/watch BRK.B", cwd=tmp_path)
    assert result.returncode == 1
    assert result.stdout.strip().count("\n") == 0
    assert "BRK-B" in result.stdout


def test_replay_prints_one_grouped_alert_then_the_digest(tmp_path: Path) -> None:
    result = marketbot("replay", "deepseek-2025-01-27", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert result.stdout.count("#1 console:default") == 1
    # The scenario's default commands turn on the 08:00 digest: it is the second message.
    alert, digest = result.stdout.split("#2 console:default")
    assert "#3 console:default" not in result.stdout
    for symbol in ("NVDA", "AVGO", "MSFT"):
        assert symbol in alert
        assert symbol in digest
    assert "Premarket digest Mon 2025-01-27" in digest
    assert " 1 message, 0 edits, 1 digest" in result.stdout  # counts agree with their nouns
    assert "1 digests" not in result.stdout
    assert not (tmp_path / "marketbot.db").exists()  # a replay never touches the real database


@pytest.mark.parametrize(
    ("render", "request_name", "body_key"),
    [
        ("slack", "chat.postMessage", "blocks"),
        ("discord", "POST /channels/{channel.id}/messages", "embeds"),
    ],
)
def test_render_prints_one_json_object_per_line_and_nothing_else(
    tmp_path: Path, render: str, request_name: str, body_key: str
) -> None:
    result = marketbot("replay", "deepseek-2025-01-27", "--render", render, cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    # Every stdout line is JSON (so `| jq .payload` works); the prose went to stderr.
    objects = [json.loads(line) for line in lines]
    assert [o["request"] for o in objects] == [request_name, request_name]  # alert, digest
    assert [o["message"] for o in objects] == ["1", "2"]
    assert all(body_key in o["payload"] for o in objects)
    assert "NVDA" in json.dumps(objects[0]["payload"], ensure_ascii=False)
    assert "Replaying deepseek-2025-01-27" in result.stderr
    assert "> /watch NVDA drop 10%" in result.stderr
    assert "replay of deepseek-2025-01-27 done" in result.stderr


def _config_file(tmp_path: Path, name: str) -> Path:
    path = tmp_path / f"{name}.toml"
    path.write_text(f'database_url = "sqlite:///{tmp_path / name}.db"\n')
    return path


@pytest.mark.parametrize("where", ["top-level", "subcommand"])
def test_config_is_read_before_or_after_the_command(
    tmp_path: Path, where: str, fake_yahoo: FakeYahoo
) -> None:
    config = _config_file(tmp_path, "from-file")
    if where == "top-level":
        args = ["--config", str(config), "cmd", "/watch NVDA drop 5%"]
    else:
        args = ["cmd", "/watch NVDA drop 5%", "--config", str(config)]
    result = marketbot(*args, cwd=tmp_path, env=_known(fake_yahoo))
    assert result.returncode == 0, result.stderr
    assert (tmp_path / "from-file.db").is_file()
    assert not (tmp_path / "marketbot.db").exists()
    listed = marketbot("-c", str(config), "cmd", "/watchlist", cwd=tmp_path)
    assert "drop 5%" in listed.stdout


def test_two_different_config_files_are_refused(tmp_path: Path) -> None:
    one, two = _config_file(tmp_path, "one"), _config_file(tmp_path, "two")
    result = marketbot("--config", str(one), "db", "upgrade", "--config", str(two), cwd=tmp_path)
    assert result.returncode == 2
    assert "--config given twice" in result.stderr
    assert not list(tmp_path.glob("*.db"))


def test_replay_of_an_unknown_scenario_exits_2(tmp_path: Path) -> None:
    result = marketbot("replay", "no-such-day", cwd=tmp_path)
    assert result.returncode == 2
    assert "deepseek-2025-01-27" in result.stderr
    assert "Traceback" not in result.stderr


def test_the_installed_entry_point_runs(tmp_path: Path) -> None:
    entry = shutil.which("marketbot") or str(Path(sys.executable).parent / "marketbot")
    if not Path(entry).exists():
        pytest.skip("marketbot is not installed in this environment (pip install -e .)")
    result = subprocess.run([entry, "--help"], capture_output=True, text=True, check=False)
    assert result.returncode == 0
    assert "replay" in result.stdout
