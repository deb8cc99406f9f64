"""The digest chart: one horizontal bar per name, its premarket move vs the previous close."""

from __future__ import annotations

import io
from collections.abc import Sequence

BAR_HEIGHT_INCHES = 0.2  # per name: 50 names still read without overlapping labels
WIDTH_INCHES = 7.0
DPI = 90
DOWN_COLOUR = "#c0392b"
UP_COLOUR = "#1e8449"


def render_digest_chart(moves: Sequence[tuple[str, float]], *, title: str) -> bytes | None:
    """A PNG of the moves, biggest at the top; None when there is no move to draw.

    Blocking (matplotlib): callers on the event loop run it with ``asyncio.to_thread``. The
    Figure API keeps no global state (no pyplot), so several may render in threads at once.
    """
    if not moves:
        return None
    # Imported here: matplotlib costs half a second, and only a digest being posted needs it.
    from matplotlib.figure import Figure
    from matplotlib.ticker import FuncFormatter

    ordered = list(reversed(moves))  # barh draws bottom-up; the biggest move goes on top
    values = [change for _, change in ordered]
    # Name and figure in one tick label: half the text a separate value label would lay out,
    # and text layout is most of a chart's cost.
    labels = [f"{symbol}  {change:+.1f}%" for symbol, change in ordered]
    height = max(2.5, 1.0 + BAR_HEIGHT_INCHES * len(ordered))
    fig = Figure(figsize=(WIDTH_INCHES, height), dpi=DPI)
    # Fixed margins instead of tight_layout(), which measures every label once more: the left
    # margin fits the longest label (about 0.085 in a character at this font size).
    left = min(0.45, (0.25 + 0.085 * max(len(label) for label in labels)) / WIDTH_INCHES)
    fig.subplots_adjust(left=left, right=0.97, top=1 - 0.45 / height, bottom=0.55 / height)
    ax = fig.add_subplot()
    colours = [DOWN_COLOUR if v < 0 else UP_COLOUR for v in values]
    ax.barh(range(len(values)), values, color=colours, height=0.7)
    ax.set_yticks(range(len(labels)), labels, fontsize="small")
    ax.set_ylim(-0.6, len(labels) - 0.4)
    ax.axvline(0, color="grey", linewidth=0.8)
    ax.xaxis.set_major_formatter(FuncFormatter(lambda x, _pos: f"{x:+.0f}%" if x else "0%"))
    ax.set_xlabel("% vs previous close", fontsize="small")
    ax.set_title(title[:120], fontsize="medium")
    ax.grid(axis="x", alpha=0.3)
    out = io.BytesIO()
    fig.savefig(out, format="png")
    return out.getvalue()
