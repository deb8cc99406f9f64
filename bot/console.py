"""The console platform: alerts rendered with Rich in the terminal, channel ``console:default``.

Also the console as a chat transcript (:class:`ConsoleSession`), in the spirit of errbot's test
backend: a test types a command, moves the bot's clock, and reads what was replied and posted,
in order, with no wall-clock waits.
"""

from __future__ import annotations

import asyncio
import contextlib
import io
import itertools
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Literal, Protocol

from rich.console import Console
from rich.panel import Panel
from rich.text import Text

from alerts.models import AlertMessage, Severity
from alerts.ports import Clock, MessageRef
from bot.render.console import render_reply

CONSOLE_CHANNEL = "console:default"

_BORDER = {Severity.INFO: "blue", Severity.WARNING: "yellow", Severity.CRITICAL: "red"}


class ConsolePlatform:
    """Prints each message as a panel; an edit prints the whole message again, marked updated.

    A terminal cannot edit what scrolled past, so an edit is shown as a new panel whose title
    says it replaces message #N: the reader sees the same story a Slack user sees change.
    """

    name = "console"

    def __init__(
        self, render: Callable[[AlertMessage], str], console: Console | None = None
    ) -> None:
        self._render = render
        self._console = console or Console()
        self._ids = itertools.count(1)
        self.sent: list[tuple[str, AlertMessage]] = []  # (message id, message), for tests and demos
        self.transcript: Transcript | None = None  # set: every reply and post is recorded too

    def handles(self, channel: str) -> bool:
        return channel.startswith("console:")

    async def send(self, message: AlertMessage, *, idempotency_key: str) -> MessageRef:
        message_id = str(next(self._ids))
        self._print(message, f"#{message_id}")
        self.sent.append((message_id, message))
        if self.transcript is not None:
            self.transcript.add("posted", self._render(message), message=message, ref=message_id)
        return MessageRef(channel=message.channel, message_id=message_id)

    async def edit(self, ref: MessageRef, message: AlertMessage) -> MessageRef:
        self._print(message, f"#{ref.message_id} updated")
        self.sent.append((ref.message_id, message))
        if self.transcript is not None:
            self.transcript.add(
                "edited", self._render(message), message=message, ref=ref.message_id
            )
        return ref

    def reply(self, text: str, *, ok: bool = True) -> None:
        """Answers to commands typed at the console, their Slack-style markup drawn."""
        if self.transcript is not None:
            self.transcript.add("reply", text, ok=ok)
        self._console.print(render_reply(text, ok=ok))
        self._console.file.flush()

    def _print(self, message: AlertMessage, tag: str) -> None:
        body = Text(self._render(message))
        self._console.print(
            Panel(body, title=f"{tag} {message.channel}", border_style=_BORDER[message.severity])
        )
        # Piped or in `docker logs`, stdout is block-buffered: an alert must show at once.
        self._console.file.flush()


# -- the console as a transcript ---------------------------------------------------------------

LineKind = Literal["typed", "reply", "posted", "edited"]
REPLY_WITHIN = 60.0  # seconds of wall time a typed command may take to be answered


@dataclass(frozen=True)
class Line:
    """One line of the transcript: what was typed, replied, posted or edited, and when."""

    kind: LineKind
    text: str  # posts and edits: the message as the console renders it
    at: datetime  # the bot's clock
    ok: bool = True  # replies: False for a refusal
    message: AlertMessage | None = None  # posts and edits
    ref: str | None = None  # posts and edits: the message id an edit refers back to

    def __str__(self) -> str:
        if self.kind == "typed":
            return f"> {self.text}"
        if self.kind == "reply":
            return self.text if self.ok else f"! {self.text}"
        tag = f"#{self.ref}" if self.kind == "posted" else f"#{self.ref} updated"
        return f"[{tag} {self.at:%H:%M:%S}]\n{self.text}"


class Transcript:
    """Everything the console showed, in order; :meth:`new` reads what came since last asked."""

    def __init__(self, clock: Clock) -> None:
        self.clock = clock
        self.lines: list[Line] = []
        self._read = 0
        self._grew = asyncio.Event()

    def add(
        self,
        kind: LineKind,
        text: str,
        *,
        ok: bool = True,
        message: AlertMessage | None = None,
        ref: str | None = None,
    ) -> None:
        self.lines.append(Line(kind, text, self.clock.now(), ok, message, ref))
        self._grew.set()

    def new(self) -> list[Line]:
        """The lines since the last call (errbot's pop_message, all at once)."""
        fresh = self.lines[self._read :]
        self._read = len(self.lines)
        return fresh

    def replies(self) -> list[str]:
        return [line.text for line in self.lines if line.kind == "reply"]

    def posts(self) -> list[Line]:
        """Alert messages as they reached the channel: each post and each edit."""
        return [line for line in self.lines if line.kind in ("posted", "edited")]

    def messages(self) -> list[AlertMessage]:
        return [line.message for line in self.posts() if line.message is not None]

    async def next_reply(self, after: int) -> Line:
        """The first reply at or after line index ``after``, once it is there."""
        while True:
            for line in self.lines[after:]:
                if line.kind == "reply":
                    return line
            self._grew.clear()
            await self._grew.wait()

    def __str__(self) -> str:
        return "\n".join(str(line) for line in self.lines)


class SteppedBot(Protocol):
    """What a session drives: ``bot.runner.Runtime`` (started with the session's console)."""

    async def start(self) -> None: ...

    async def stop(self) -> None: ...

    async def settle(self) -> None: ...

    async def advance(self, delta: timedelta) -> None: ...


class ConsoleSession:
    """A running bot as a chat on the console: type, move the clock, read the transcript.

    Build the runtime with ``platforms=[session.console]`` and ``commands_in=session.read_line``
    (``bot.runner.console_session`` does), so a typed line takes the path one typed at
    ``marketbot run`` takes. Nothing here waits on wall time: :meth:`type` returns once the
    reply is there and the bot has settled; :meth:`advance` moves the injected ManualClock
    through every job and wait due on the way (watch sync, mute ends, digests, delivery).
    """

    def __init__(self, clock: Clock, render: Callable[[AlertMessage], str] | None = None) -> None:
        if render is None:
            from bot.render.console_text import render_console

            render = render_console
        self.clock = clock
        self.transcript = Transcript(clock)
        self.console = ConsolePlatform(render, Console(file=io.StringIO(), width=100))
        self.console.transcript = self.transcript
        self._typed: asyncio.Queue[str] = asyncio.Queue()
        self._bot: SteppedBot | None = None

    async def read_line(self) -> str:
        """The runtime's console input: what :meth:`type` typed."""
        return await self._typed.get()

    @contextlib.asynccontextmanager
    async def running(self, bot: SteppedBot) -> AsyncIterator[ConsoleSession]:
        """Start ``bot``, settle it, and stop it at the end (whatever the test did)."""
        self._bot = bot
        await bot.start()
        try:
            await bot.settle()
            yield self
        finally:
            await bot.stop()
            self._bot = None

    @property
    def bot(self) -> SteppedBot:
        if self._bot is None:
            raise RuntimeError(
                "the session's bot is not running (use `async with session.running`)"
            )
        return self._bot

    async def type(self, line: str) -> str:
        """Type one command; returns its reply once the bot settled after it."""
        if not line.strip():
            raise ValueError("a blank line gets no reply at the console")
        start = len(self.transcript.lines)
        self.transcript.add("typed", line)
        self._typed.put_nowait(line + "\n")
        try:
            # A bound, not a wait for time to pass: a reader that died fails the test at once.
            async with asyncio.timeout(REPLY_WITHIN):
                reply = await self.transcript.next_reply(start)
        except TimeoutError:
            raise AssertionError(f"no reply to {line!r} within {REPLY_WITHIN:g} s") from None
        await self.bot.settle()
        return reply.text

    async def advance(
        self,
        delta: timedelta | None = None,
        *,
        seconds: float = 0,
        minutes: float = 0,
        hours: float = 0,
    ) -> list[Line]:
        """Move the clock (a ManualClock) on; returns the lines that appeared meanwhile."""
        start = len(self.transcript.lines)
        step = (delta or timedelta()) + timedelta(seconds=seconds, minutes=minutes, hours=hours)
        await self.bot.advance(step)
        return self.transcript.lines[start:]

    async def settle(self) -> None:
        await self.bot.settle()
