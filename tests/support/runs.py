"""`marketbot run` in a test: pointed at the fake Slack and Discord, in process or as a subprocess.

The subprocess is the real command line (``python -m bot.cli run``) stopped with SIGTERM, as
``docker stop`` stops it; its output is read from the start, so a talkative run (DEBUG logs)
never blocks on a full pipe.
"""

from __future__ import annotations

import asyncio
import contextlib
import signal
import sys
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

from bot.fakes.discord_server import FakeDiscord
from bot.fakes.slack_server import FakeSlack
from bot.runner import Runtime


def slack_section(slack: FakeSlack) -> dict[str, Any]:
    """The ``[slack]`` settings of a bot connected to ``slack`` over Socket Mode."""
    return {"bot_token": slack.bot_token, "app_token": slack.app_token, "api_url": slack.api_url}


def discord_section(discord: FakeDiscord) -> dict[str, Any]:
    """The ``[discord]`` settings of a bot connected to ``discord``'s REST API and gateway."""
    return {
        "token": discord.token,
        "api_url": discord.rest_base,
        "gateway_url": discord.gateway_url,
        "dev_guild_id": int(discord.guild_id),
    }


def chat_env(slack: FakeSlack | None = None, discord: FakeDiscord | None = None) -> dict[str, str]:
    """The same settings as ``MARKETBOT_SLACK__*`` / ``MARKETBOT_DISCORD__*`` for a subprocess."""
    env: dict[str, str] = {}
    for name, section in (
        ("SLACK", slack_section(slack) if slack is not None else {}),
        ("DISCORD", discord_section(discord) if discord is not None else {}),
    ):
        env.update({f"MARKETBOT_{name}__{key.upper()}": str(v) for key, v in section.items()})
    return env


@contextlib.asynccontextmanager
async def started(runtime: Runtime) -> AsyncIterator[Runtime]:
    """``runtime`` running for the block, stopped after it whatever happened."""
    await runtime.start()
    try:
        yield runtime
    finally:
        await runtime.stop()


class MarketbotRun:
    """``async with MarketbotRun(cwd, env) as run:`` a `marketbot run` process for the block.

    Leaving the block sends SIGTERM and waits up to ``stop_within`` seconds for the exit (then
    kills it); ``returncode``, ``stdout``, ``stderr`` and ``stop_seconds`` (SIGTERM to exit)
    are set then.
    """

    def __init__(self, cwd: Path, env: dict[str, str], *, stop_within: float = 60.0) -> None:
        self.cwd = cwd
        self.env = env
        self.stop_within = stop_within
        self.returncode: int | None = None
        self.stdout = self.stderr = ""
        self.stop_seconds = 0.0
        self._proc: asyncio.subprocess.Process | None = None
        self._output: asyncio.Future[tuple[bytes, bytes]] | None = None

    async def __aenter__(self) -> MarketbotRun:
        self._proc = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "bot.cli",
            "run",
            cwd=self.cwd,
            env=self.env,
            stdin=asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
        )
        self._output = asyncio.ensure_future(self._proc.communicate())
        return self

    async def __aexit__(self, *exc: object) -> None:
        proc, output = self._proc, self._output
        if proc is None or output is None:
            raise RuntimeError("MarketbotRun left without being entered")
        signalled = time.monotonic()
        with contextlib.suppress(ProcessLookupError):  # it may have ended by itself
            proc.send_signal(signal.SIGTERM)
        try:
            stdout, stderr = await asyncio.wait_for(output, self.stop_within)
        finally:
            if proc.returncode is None:
                proc.kill()
        self.stop_seconds = time.monotonic() - signalled
        self.returncode = proc.returncode
        self.stdout, self.stderr = stdout.decode(), stderr.decode()


class SlowToCancel:
    """A sleep whose cancel takes a moment, as a real one's may: the window in which a stop's
    cancel used to be taken for the sleep's own and swallowed.

    ``sleeping`` is set once it waits, ``cancelling`` once its cancel arrived; that cancel
    completes only when the test sets ``release``.
    """

    def __init__(self) -> None:
        self.sleeping, self.cancelling, self.release = (
            asyncio.Event(),
            asyncio.Event(),
            asyncio.Event(),
        )

    async def sleep(self, seconds: float) -> None:
        self.sleeping.set()
        try:
            await asyncio.Event().wait()
        except asyncio.CancelledError:
            self.cancelling.set()
            await self.release.wait()
            raise
