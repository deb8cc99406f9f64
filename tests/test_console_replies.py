"""Command replies in the terminal: Slack-style markup drawn with Rich, never printed raw."""

from __future__ import annotations

import io

import pytest
from rich.console import Console

from bot.console import ConsolePlatform
from bot.render.console import CODE_STYLE, render_reply
from bot.render.console_text import render_console


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
