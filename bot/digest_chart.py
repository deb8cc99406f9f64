"""The digest chart: one horizontal bar per name, its premarket move vs the previous close."""

from __future__ import annotations

import io
from collections.abc import Sequence

BAR_HEIGHT_INCHES = 0.22  # per name: 50 names still read without overlapping labels
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
    names = [symbol for symbol, _ in ordered]
    values = [change for _, change in ordered]
    height = max(2.5, 1.2 + BAR_HEIGHT_INCHES * len(ordered))
    fig = Figure(figsize=(7, height), dpi=100)
    ax = fig.subplots()
    colours = [DOWN_COLOUR if v < 0 else UP_COLOUR for v in values]
    bars = ax.barh(range(len(values)), values, color=colours, height=0.7)
    ax.set_yticks(range(len(names)), names, fontsize="small")
    ax.axvline(0, color="grey", linewidth=0.8)
    ax.xaxis.set_major_formatter(FuncFormatter(lambda x, _pos: f"{x:+.0f}%" if x else "0%"))
    ax.bar_label(bars, labels=[f"{v:+.1f}%" for v in values], padding=3, fontsize="x-small")
    # Room for the value labels on both sides of the widest bar.
    lo, hi = min(0.0, *values), max(0.0, *values)
    span = max(hi - lo, 1.0)
    ax.set_xlim(lo - 0.15 * span, hi + 0.15 * span)
    ax.set_xlabel("% vs previous close")
    ax.set_title(title[:120], fontsize="medium")
    ax.grid(axis="x", alpha=0.3)
    fig.tight_layout()
    out = io.BytesIO()
    fig.savefig(out, format="png")
    return out.getvalue()
