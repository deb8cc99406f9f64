"""Command replies for the terminal: the replies' Slack-style light markup drawn with Rich.

Replies are written once, in the markup Slack shows as is (``*bold*``, `` `code` ``,
``_italic_``, ``~strike~``, ``<url|label>``); a terminal would print the asterisks and
backticks raw, so this turns each span into a Rich style and drops the markers.
"""

from __future__ import annotations

import re

from rich.style import Style
from rich.text import Text

CODE_STYLE = Style(color="cyan")
BOLD_STYLE = Style(bold=True)
ITALIC_STYLE = Style(italic=True)
STRIKE_STYLE = Style(strike=True)

# One alternative per span kind. Bold, italic and strike need a non-word character (or the
# edge) outside their markers, as in Slack: `2*3*4` and `basket:my_ai_list` stay as typed.
_SPAN = re.compile(
    r"`(?P<code>[^`\n]+)`"
    r"|(?<![\w*])\*(?P<bold>[^*\n]+?)\*(?![\w*])"
    r"|(?<![\w_])_(?P<italic>[^_\n]+?)_(?![\w_])"
    r"|(?<![\w~])~(?P<strike>[^~\n]+?)~(?![\w~])"
    r"|<(?P<url>https?://[^|>\s]+)(?:\|(?P<label>[^>\n]+))?>"
)
_STYLES = {"bold": BOLD_STYLE, "italic": ITALIC_STYLE, "strike": STRIKE_STYLE}
_KINDS = ("code", "bold", "italic", "strike", "url")


def render_reply(text: str, *, ok: bool = True) -> Text:
    """A reply as styled terminal text; a refusal is drawn in bold red throughout."""
    out = Text(style="bold red" if not ok else "")
    position = 0
    for match in _SPAN.finditer(text):
        out.append(text[position : match.start()])
        position = match.end()
        kind = next(name for name in _KINDS if match[name] is not None)
        if kind == "code":
            out.append(match["code"], style=CODE_STYLE)
        elif kind in _STYLES:
            # A code span inside bold (`*Watching `drop 5%`*`) keeps its own look.
            out.append_text(_inner(match[kind], _STYLES[kind]))
        else:
            url = match["url"]
            out.append(match["label"] or url, style=Style(underline=True, link=url))
    out.append(text[position:])
    return out


def _inner(text: str, style: Style) -> Text:
    inner = render_reply(text)
    inner.stylize(style)
    return inner
