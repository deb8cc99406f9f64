"""The console platform: alerts rendered with Rich in the terminal, channel ``console:default``."""

from __future__ import annotations

import itertools
from collections.abc import Callable

from rich.console import Console
from rich.panel import Panel
from rich.text import Text

from alerts.models import AlertMessage, Severity
from alerts.ports import MessageRef

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

    def handles(self, channel: str) -> bool:
        return channel.startswith("console:")

    async def send(self, message: AlertMessage, *, idempotency_key: str) -> MessageRef:
        message_id = str(next(self._ids))
        self._print(message, f"#{message_id}")
        self.sent.append((message_id, message))
        return MessageRef(channel=message.channel, message_id=message_id)

    async def edit(self, ref: MessageRef, message: AlertMessage) -> MessageRef:
        self._print(message, f"#{ref.message_id} updated")
        self.sent.append((ref.message_id, message))
        return ref

    def reply(self, text: str, *, ok: bool = True) -> None:
        """Answers to commands typed at the console."""
        self._console.print(Text(text, style="" if ok else "bold red"))
        self._console.file.flush()

    def _print(self, message: AlertMessage, tag: str) -> None:
        body = Text(self._render(message))
        self._console.print(
            Panel(body, title=f"{tag} {message.channel}", border_style=_BORDER[message.severity])
        )
        # Piped or in `docker logs`, stdout is block-buffered: an alert must show at once.
        self._console.file.flush()
