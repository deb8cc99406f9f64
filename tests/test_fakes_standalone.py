"""The loopback fakes started by hand, as the README starts them: `marketbot doctor` all green."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path

from bot.store import SqlStore
from tests.test_cli import ROOT, marketbot


@contextmanager
def _fake(module: str, *args: str, lines: int = 1) -> Iterator[list[str]]:
    """Run ``python -m MODULE ARGS`` until the block ends; yields the first ``lines`` it prints."""
    base = {k: v for k, v in os.environ.items() if not k.startswith("MARKETBOT_")}
    proc = subprocess.Popen(
        [sys.executable, "-m", module, *args],
        stdout=subprocess.PIPE,
        text=True,
        env={**base, "PYTHONPATH": str(ROOT)},
    )
    try:
        assert proc.stdout is not None
        printed = [proc.stdout.readline() for _ in range(lines)]
        assert all(printed), f"{module} stopped before saying where it listens: {printed}"
        yield printed
    finally:
        proc.terminate()
        proc.wait(timeout=30)
        if proc.stdout is not None:
            proc.stdout.close()


def _exports(printed: list[str]) -> dict[str, str]:
    found = dict(re.findall(r"^export (MARKETBOT_\w+)=(\S+)$", "".join(printed), re.M))
    assert found, printed
    return found


def test_doctor_is_all_green_against_the_fakes_started_by_hand(tmp_path: Path) -> None:
    db_url = f"sqlite:///{tmp_path / 'marketbot.db'}"
    store = SqlStore(db_url)
    store.upgrade()
    store.close()
    with ExitStack() as fakes:
        yahoo = fakes.enter_context(
            _fake(
                "bot.fakes.yahoo_server",
                "--port=0",
                "--quote=NVDA=124.0:142.62:PRE",
                "--quote=SPY=600.0:598.0",
            )
        )
        stream = fakes.enter_context(_fake("bot.fakes.yahoo_streamer", "--port=0", "NVDA=142.62"))
        slack = fakes.enter_context(_fake("bot.fakes.slack_server", "--port=0", lines=4))
        discord = fakes.enter_context(_fake("bot.fakes.discord_server", "--port=0", lines=4))
        yahoo_url = re.search(r"http://127\.0\.0\.1:\d+", yahoo[0])
        stream_url = re.search(r"ws://127\.0\.0\.1:\d+/\S*", stream[0])
        assert yahoo_url, yahoo
        assert stream_url, stream
        env = {
            "MARKETBOT_DATABASE_URL": db_url,
            "MARKETBOT_YAHOO__BASE_URL": yahoo_url.group(),
            "MARKETBOT_YAHOO__STREAM_URL": stream_url.group(),
            **_exports(slack),
            **_exports(discord),
            "COLUMNS": "200",
        }
        result = marketbot("doctor", cwd=tmp_path, env=env)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "all checks passed" in result.stdout
    for check in ("auth.test", "socket mode", "servers", "SPY quoted", "connected to ws://"):
        assert check in result.stdout
    assert " skip " not in result.stdout  # every platform configured, none left out
