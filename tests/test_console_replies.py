"""Command replies in the terminal: Slack-style markup drawn with Rich, never printed raw."""

from __future__ import annotations

import io

import pytest
from rich.console import Console

from alerts.commands import CommandRouter
from alerts.ports import ManualClock
from bot.console import ConsolePlatform
from bot.render.console import CODE_STYLE, render_reply
from bot.render.console_text import render_console
from bot.store import SqlStore


@pytest.mark.parametrize(
    ("markup", "plain"),
    [
        (
            "Watching *NVDA*: alert on `drop 10%` (watch #1).",
            "Watching NVDA: alert on drop 10% (watch #1).",
        ),
        ("*Watchlist* (1)\n#1 *NVDA* `drop 10%`", "Watchlist (1)\n#1 NVDA drop 10%"),
        ("_note_ and ~old~", "note and old"),
        ("see <https://example.com/a|the story>", "see the story"),
        # Not markup: arithmetic, names with underscores, a lone asterisk.
        ("2*3*4 basket:my_ai_list 5 * 2", "2*3*4 basket:my_ai_list 5 * 2"),
    ],
)
def test_markers_are_dropped_and_the_words_kept(markup: str, plain: str) -> None:
    assert render_reply(markup).plain == plain


def test_spans_get_their_styles() -> None:
    text = render_reply("Watching *NVDA*: alert on `drop 10%`")
    styles = {text.plain[s.start : s.end]: s.style for s in text.spans}
    assert styles["NVDA"].bold  # type: ignore[union-attr]
    assert styles["drop 10%"] == CODE_STYLE


def test_a_refusal_is_red() -> None:
    assert str(render_reply("No basket `x`.", ok=False).style) == "bold red"


def test_console_platform_prints_replies_without_raw_markup() -> None:
    out = io.StringIO()
    console = ConsolePlatform(render_console, Console(file=out, width=120, color_system=None))
    console.reply("Watching *NVDA*: alert on `drop 10%` (watch #1).")
    console.reply("Unknown command `/wacth`. Did you mean `/watch NVDA`?", ok=False)
    printed = out.getvalue()
    assert "Watching NVDA: alert on drop 10% (watch #1)." in printed
    assert "Did you mean /watch NVDA?" in printed
    assert "*" not in printed
    assert "`" not in printed


async def test_console_near_miss_and_help_name_only_console_commands(
    sqlite_store: SqlStore, clock: ManualClock
) -> None:
    # Typed at `marketbot run`'s console (the runtime's own reader): /pingrole needs role
    # pings, which the console lacks, so a typo is not sent there and help does not list it.
    from bot.runner import read_console_commands

    typed = iter(["/pingrol off\n", "/help pingrol\n", "/help\n", ""])
    replies: list[tuple[str, bool]] = []

    async def read_line() -> str:
        return next(typed)

    router = CommandRouter(sqlite_store, clock)
    await read_console_commands(router, lambda text, ok: replies.append((text, ok)), read_line)
    (typo, typo_ok), (help_typo, _), (listing, listing_ok) = replies
    assert not typo_ok
    assert "Unknown command `/pingrol`" in typo
    assert "Did you mean" not in typo + help_typo
    assert listing_ok
    assert "`/watch" in listing
    assert "pingrole" not in typo + help_typo + listing
