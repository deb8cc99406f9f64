"""Chart images for alert messages: each name's move against its previous close (matplotlib)."""

from __future__ import annotations

import io
from collections.abc import Mapping, Sequence
from datetime import datetime
from zoneinfo import ZoneInfo

MAX_LINES = 8  # more lines than this is a tangle, not a chart


def render_move_chart(
    series: Mapping[str, Sequence[tuple[datetime, float]]],
    *,
    title: str,
    timezone: str = "America/New_York",
) -> bytes | None:
    """A PNG of percent change over time, one line per symbol; None when there is nothing."""
    drawable = {symbol: points for symbol, points in series.items() if len(points) >= 2}
    if not drawable:
        return None
    # Imported here: matplotlib costs half a second, and only a sent alert needs it. The
    # Figure API (no pyplot) keeps no global state, so this may run in a worker thread.
    import matplotlib.dates as mdates
    from matplotlib.figure import Figure

    zone = ZoneInfo(timezone)
    biggest = sorted(drawable.items(), key=lambda item: abs(item[1][-1][1]), reverse=True)
    fig = Figure(figsize=(8, 4), dpi=100)
    ax = fig.subplots()
    for symbol, points in biggest[:MAX_LINES]:
        times = mdates.date2num([when.astimezone(zone) for when, _ in points])  # type: ignore[no-untyped-call]
        ax.plot(times, [change for _, change in points], label=f"{symbol} {points[-1][1]:+.1f}%")
    ax.axhline(0, color="grey", linewidth=0.8)
    ax.set_title(title[:120])
    ax.set_ylabel("% vs previous close")
    ax.xaxis.set_major_formatter(mdates.DateFormatter("%H:%M", tz=zone))  # type: ignore[no-untyped-call]
    ax.grid(alpha=0.3)
    ax.legend(loc="best", fontsize="small")
    fig.tight_layout()
    out = io.BytesIO()
    fig.savefig(out, format="png")
    return out.getvalue()
