"""Chart images for alert messages and backtests: moves and prices on a trustworthy time axis."""

from __future__ import annotations

import io
import json
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any
from zoneinfo import ZoneInfo

from alerts.models import AlertKind, AlertMessage
from alerts.rules import (
    Basis,
    ChangeRule,
    Direction,
    GapRule,
    LevelRule,
    RuleSyntaxError,
    parse_rule,
)

if TYPE_CHECKING:
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure

MAX_LINES = 8  # more lines than this is a tangle, not a chart
MAX_TICKS = 8

# Tick steps a trader reads at a glance: whole minutes, then whole hours, then whole days.
_MINUTE_STEPS = (1, 2, 5, 10, 15, 30)
_HOUR_STEPS = (1, 2, 3, 4, 6, 12)
_DAY_STEPS = (1, 2, 7, 14)

_FIRING_KINDS = (AlertKind.FIRING, AlertKind.ESCALATED, AlertKind.REPEAT)


@dataclass(frozen=True, slots=True)
class Threshold:
    """A horizontal line where a rule fires: ``value`` in the chart's own unit."""

    symbol: str
    value: float
    label: str  # the rule, e.g. "drop 10%"


@dataclass(frozen=True, slots=True)
class Fire:
    """A point where a rule fired: when, and the value plotted there."""

    symbol: str
    at: datetime
    value: float
    label: str
    move: float | None = None  # the % move that fired (points the marker down for a drop)


def _step(span: timedelta) -> timedelta:
    """The smallest whole-unit step that puts at most MAX_TICKS ticks on ``span``."""
    for minutes in _MINUTE_STEPS:
        if span <= timedelta(minutes=minutes * (MAX_TICKS - 1)):
            return timedelta(minutes=minutes)
    for hours in _HOUR_STEPS:
        if span <= timedelta(hours=hours * (MAX_TICKS - 1)):
            return timedelta(hours=hours)
    for days in _DAY_STEPS:
        if span <= timedelta(days=days * (MAX_TICKS - 1)):
            return timedelta(days=days)
    return timedelta(days=math.ceil(span / timedelta(days=MAX_TICKS - 1)))


def _floor(when: datetime, step: timedelta, zone: ZoneInfo) -> datetime:
    """``when`` rounded down to a multiple of ``step`` on the display zone's wall clock."""
    local = when.astimezone(zone)
    if step >= timedelta(days=1):
        return local.replace(hour=0, minute=0, second=0, microsecond=0)
    midnight = local.replace(hour=0, minute=0, second=0, microsecond=0)
    elapsed = local.replace(tzinfo=None) - midnight.replace(tzinfo=None)
    whole = (elapsed // step) * step
    return (midnight.replace(tzinfo=None) + whole).replace(tzinfo=zone)


def time_axis(ax: Axes, start: datetime, end: datetime, zone: ZoneInfo) -> None:
    """Ticks at whole minutes, hours or days of ``zone``, with the zone and date in the label.

    Matplotlib's default locator for ``date2num`` floats knows nothing of time: it ticks at
    nice fractions of a day (03:24, 04:36). Here the step is chosen from the span, the axis is
    widened to whole steps on the display zone's wall clock (so both ends carry a tick), and a
    date locator of that unit places the ticks, so every label is distinct and increasing.
    """
    import matplotlib.dates as mdates

    if end <= start:
        end = start + timedelta(minutes=1)
    step = _step(end - start)
    low = _floor(start, step, zone)
    high = _floor(end, step, zone)
    # Past the last point (often the fire, on a whole minute) by up to a step: the marker and
    # its label are drawn whole, not cut at the frame.
    if high <= end.astimezone(zone):
        high = (high.replace(tzinfo=None) + step).replace(tzinfo=zone)
    locator: mdates.DateLocator
    if step < timedelta(hours=1):
        minutes = int(step.total_seconds() // 60)
        locator = mdates.MinuteLocator(byminute=range(0, 60, minutes), tz=zone)  # type: ignore[no-untyped-call]
    elif step < timedelta(days=1):
        hours = int(step.total_seconds() // 3600)
        locator = mdates.HourLocator(byhour=range(0, 24, hours), tz=zone)  # type: ignore[no-untyped-call]
    else:
        locator = mdates.DayLocator(interval=step.days, tz=zone)  # type: ignore[no-untyped-call]
    first_day, last_day = low.date(), high.date()
    if step >= timedelta(days=1):
        pattern = "%b %d"
    elif first_day == last_day:
        pattern = "%H:%M"
    else:
        pattern = "%a %H:%M"  # past midnight a bare 00:00 would read as earlier than 23:00
    ax.xaxis.set_major_locator(locator)
    ax.xaxis.set_major_formatter(mdates.DateFormatter(pattern, tz=zone))  # type: ignore[no-untyped-call]
    ax.set_xlim(mdates.date2num(low), mdates.date2num(high))  # type: ignore[no-untyped-call]
    zone_name = f"{low.tzname()}, {zone.key}" if low.tzname() != zone.key else zone.key
    if first_day == last_day:
        dates = f"{first_day:%a %Y-%m-%d}"
    else:
        dates = f"{first_day:%Y-%m-%d} to {last_day:%Y-%m-%d}"
    ax.set_xlabel(f"{dates} · times in {zone_name}")


def rule_threshold(
    rule_text: str, reference_price: float | None, change: float | None
) -> float | None:
    """Where ``rule_text`` fires, in % against the previous close; None if no fixed line exists.

    Rolling windows, moves from the open and volume rules have no line on a chart of moves
    against the previous close, so they get none rather than a misleading one.
    """
    try:
        rule = parse_rule(rule_text)
    except RuleSyntaxError:
        return None
    if isinstance(rule, ChangeRule | GapRule):
        if isinstance(rule, ChangeRule) and (rule.window is not None or rule.basis is Basis.OPEN):
            return None
        if rule.direction is Direction.DROP:
            return -rule.pct
        if rule.direction is Direction.RISE:
            return rule.pct
        return -rule.pct if (change or 0.0) < 0 else rule.pct
    if isinstance(rule, LevelRule) and reference_price:
        return (rule.price / reference_price - 1.0) * 100.0
    return None


def _move_figure(
    series: Mapping[str, Sequence[tuple[datetime, float]]],
    *,
    title: str,
    zone: ZoneInfo,
    ylabel: str,
    thresholds: Sequence[Threshold] = (),
    fires: Sequence[Fire] = (),
    value_format: str = "{:+.1f}%",
    zero_line: bool = True,
) -> Figure | None:
    drawable = {symbol: points for symbol, points in series.items() if len(points) >= 2}
    if not drawable:
        return None
    # Imported here: matplotlib costs half a second, and only a chart needs it. The Figure
    # API (no pyplot) keeps no global state, so this may run in a worker thread.
    import matplotlib.dates as mdates
    from matplotlib.colors import to_hex
    from matplotlib.figure import Figure

    biggest = sorted(
        drawable.items(), key=lambda item: abs(item[1][-1][1]) if zero_line else 0, reverse=True
    )[:MAX_LINES]
    fig = Figure(figsize=(8, 4), dpi=100)
    ax = fig.subplots()
    colors: dict[str, str] = {}
    start = min(points[0][0] for _, points in biggest)
    end = max(points[-1][0] for _, points in biggest)
    for symbol, points in biggest:
        times = mdates.date2num([when for when, _ in points])  # type: ignore[no-untyped-call]
        label = f"{symbol} {value_format.format(points[-1][1])}"
        (line,) = ax.plot(times, [value for _, value in points], label=label, linewidth=1.4)
        colors[symbol] = to_hex(line.get_color())
    if zero_line:
        ax.axhline(0, color="grey", linewidth=0.8)
    # Names crossing the same line share it: one line, one label, not a smudge of overlaps.
    lines: dict[float, list[Threshold]] = {}
    for mark in thresholds:
        if mark.symbol in colors:
            lines.setdefault(round(mark.value, 6), []).append(mark)
    for value, marks in lines.items():
        symbols = list(dict.fromkeys(mark.symbol for mark in marks))
        rules = " / ".join(dict.fromkeys(mark.label for mark in marks))
        color = colors[symbols[0]] if len(symbols) == 1 else "dimgray"
        ax.axhline(value, color=color, linestyle="--", linewidth=1, alpha=0.8)
        ax.annotate(
            f"{', '.join(symbols)}: {rules}",
            xy=(0.005, value),
            xycoords=("axes fraction", "data"),
            xytext=(0, 2),
            textcoords="offset points",
            fontsize="x-small",
            color=color,
        )
    for fire in fires:
        if fire.symbol not in colors:
            continue
        start, end = min(start, fire.at), max(end, fire.at)
        x = mdates.date2num(fire.at)  # type: ignore[no-untyped-call]
        falling = (fire.move if fire.move is not None else fire.value) < 0
        ax.plot(
            [x],
            [fire.value],
            marker="v" if falling else "^",
            markersize=9,
            color=colors[fire.symbol],
            markeredgecolor="black",
            zorder=5,
            linestyle="none",
        )
        ax.annotate(
            fire.label,
            xy=(x, fire.value),
            xytext=(6, -12 if falling else 6),
            textcoords="offset points",
            fontsize="x-small",
        )
    time_axis(ax, start, end, zone)
    ax.set_title(title[:120])
    ax.set_ylabel(ylabel)
    ax.grid(alpha=0.3)
    ax.legend(loc="best", fontsize="small")
    fig.tight_layout()
    return fig


def move_figure(
    series: Mapping[str, Sequence[tuple[datetime, float]]],
    *,
    title: str,
    timezone: str = "America/New_York",
    thresholds: Sequence[Threshold] = (),
    fires: Sequence[Fire] = (),
) -> Figure | None:
    """Percent change against the previous close over time, one line per symbol."""
    return _move_figure(
        series,
        title=title,
        zone=ZoneInfo(timezone),
        ylabel="% vs previous close",
        thresholds=thresholds,
        fires=fires,
    )


def price_figure(
    symbol: str,
    points: Sequence[tuple[datetime, float]],
    *,
    title: str,
    timezone: str = "America/New_York",
    fires: Sequence[Fire] = (),
    currency: str | None = None,
) -> Figure | None:
    """A price path with the points where a rule fired (the backtest's chart)."""
    return _move_figure(
        {symbol: points},
        title=title,
        zone=ZoneInfo(timezone),
        ylabel=f"price ({currency})" if currency else "price",
        fires=fires,
        value_format="{:,.2f}",
        zero_line=False,
    )


# The PNG text chunk that lists the time axis's tick labels as a JSON array: what a reader of
# the file (a test, `marketbot replay --charts`'s user) can check without looking at pixels.
TIME_TICKS_KEY = "marketbot time ticks"
MARKS_KEY = "marketbot marks"  # the rule lines and fires drawn, as JSON


def tick_labels(fig: Figure) -> list[str]:
    """The time axis's tick labels as drawn (the locator runs when the labels are asked for)."""
    if not fig.axes:
        return []
    return [label.get_text() for label in fig.axes[0].get_xticklabels() if label.get_text()]


def png(fig: Figure, *, marks: tuple[Sequence[Threshold], Sequence[Fire]] | None = None) -> bytes:
    metadata = {TIME_TICKS_KEY: json.dumps(tick_labels(fig))}
    if marks is not None:
        thresholds, fires = marks
        metadata[MARKS_KEY] = json.dumps(
            {
                "lines": [[t.symbol, t.label, round(t.value, 4)] for t in thresholds],
                "fires": [[f.symbol, f.at.isoformat(), round(f.value, 4)] for f in fires],
            }
        )
    out = io.BytesIO()
    fig.savefig(out, format="png", metadata=metadata)
    return out.getvalue()


def png_text(image: bytes, key: str = TIME_TICKS_KEY) -> Any:
    """What :func:`png` recorded under ``key`` in ``image`` (JSON); None when absent."""
    from PIL import Image

    with Image.open(io.BytesIO(image)) as picture:
        text = picture.info.get(key)
    return json.loads(text) if isinstance(text, str) else None


def alert_marks(message: AlertMessage) -> tuple[list[Threshold], list[Fire]]:
    """The rule lines and fire points of a message's price alerts."""
    thresholds: list[Threshold] = []
    fires: list[Fire] = []
    for alert in message.alerts:
        if alert.kind not in _FIRING_KINDS or alert.change_pct is None:
            continue
        line = rule_threshold(alert.rule_text, alert.reference_price, alert.change_pct)
        if line is not None:
            thresholds.append(Threshold(alert.symbol, line, alert.rule_text))
        fires.append(Fire(alert.symbol, alert.at, alert.change_pct, f"{alert.change_pct:+.1f}%"))
    return thresholds, fires


def render_move_chart(
    series: Mapping[str, Sequence[tuple[datetime, float]]],
    *,
    title: str,
    timezone: str = "America/New_York",
    message: AlertMessage | None = None,
) -> bytes | None:
    """A PNG of percent change over time, one line per symbol; None when there is nothing.

    With ``message``, each fired rule's threshold is a dashed line and the fire is marked.
    """
    thresholds, fires = alert_marks(message) if message is not None else ([], [])
    fig = move_figure(series, title=title, timezone=timezone, thresholds=thresholds, fires=fires)
    return png(fig, marks=(thresholds, fires)) if fig is not None else None
