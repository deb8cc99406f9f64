"""Chart images: a time axis a trader can read, the rule's line and the fire marked."""

from __future__ import annotations

import itertools
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest

from alerts.models import Alert, AlertKind, AlertMessage
from bot.charts import Fire, move_figure, price_figure, render_move_chart, rule_threshold

NY = ZoneInfo("America/New_York")
PREMARKET = datetime(2025, 1, 27, 9, 0, tzinfo=UTC)  # 04:00 EST


def _path(start: datetime, minutes: float, step_seconds: int, slope: float) -> list:
    count = int(minutes * 60 // step_seconds) + 1
    return [
        (start + timedelta(seconds=i * step_seconds), -3.0 + slope * i / max(count - 1, 1))
        for i in range(count)
    ]


def _tick_labels(fig) -> list[str]:  # type: ignore[no-untyped-def]
    fig.canvas.draw()  # labels exist only once the locator has run
    [ax] = fig.axes
    return [label.get_text() for label in ax.get_xticklabels() if label.get_text()]


def _as_times(labels: list[str], day: datetime) -> list[datetime]:
    local = day.astimezone(NY)
    out = []
    for text in labels:
        hours, minutes = text.split(":")
        out.append(local.replace(hour=int(hours), minute=int(minutes), second=0, microsecond=0))
    return out


@pytest.mark.parametrize(
    ("minutes", "step_seconds"),
    [(2, 10), (9, 10), (47, 60), (150, 60), (330, 60)],
    ids=["2m", "9m", "47m", "2h30", "5h30"],
)
def test_tick_labels_are_whole_times_distinct_and_increasing(
    minutes: float, step_seconds: int
) -> None:
    start = PREMARKET + timedelta(seconds=37)  # never on a whole minute
    fig = move_figure(
        {"NVDA": _path(start, minutes, step_seconds, -10)}, title="NVDA", timezone=NY.key
    )
    assert fig is not None
    labels = _tick_labels(fig)
    assert len(labels) >= 2, labels
    assert len(set(labels)) == len(labels), labels
    times = _as_times(labels, start)
    assert times == sorted(times), labels
    # Whole steps a trader reads at a glance, the same step between every pair.
    steps = {b - a for a, b in itertools.pairwise(times)}
    assert len(steps) == 1, labels
    [step] = steps
    assert step in {timedelta(minutes=m) for m in (1, 2, 5, 10, 15, 30)} | {
        timedelta(hours=h) for h in (1, 2, 3)
    }
    # The first tick is at or before the first point: the whole path lies between ticks.
    assert times[0] <= start.astimezone(NY) < times[0] + step


def test_the_axis_names_the_display_zone_and_the_date() -> None:
    fig = move_figure(
        {"NVDA": _path(PREMARKET, 30, 60, -10)}, title="NVDA", timezone="Europe/Amsterdam"
    )
    assert fig is not None
    labels = _tick_labels(fig)
    assert labels[0] == "10:00"  # 04:00 EST is 10:00 CET: ticks follow the display zone
    xlabel = fig.axes[0].get_xlabel()
    assert "2025-01-27" in xlabel
    assert "CET" in xlabel
    assert "Europe/Amsterdam" in xlabel


def test_a_day_long_backtest_axis_ticks_whole_hours_then_whole_days() -> None:
    hours = move_figure({"NVDA": _path(PREMARKET, 16 * 60, 300, -5)}, title="t", timezone=NY.key)
    assert hours is not None
    hour_labels = _tick_labels(hours)
    assert all(label.endswith(":00") for label in hour_labels), hour_labels
    days = price_figure(
        "NVDA",
        [(PREMARKET + timedelta(days=d), 100.0 + d) for d in range(30)],
        title="t",
        timezone=NY.key,
    )
    assert days is not None
    day_labels = _tick_labels(days)
    assert len(set(day_labels)) == len(day_labels) >= 3, day_labels
    parsed = [datetime.strptime(f"2025 {label}", "%Y %b %d") for label in day_labels]
    assert parsed == sorted(parsed), day_labels


def _alert(symbol: str, change: float, at: datetime, rule: str = "drop 10%") -> Alert:
    return Alert(
        key=f"1:{symbol}:{at.isoformat()}:firing:0",
        channel="console:default",
        kind=AlertKind.FIRING,
        symbol=symbol,
        at=at,
        rule_text=rule,
        price=100 * (1 + change / 100),
        reference_price=100.0,
        change_pct=change,
    )


def test_the_rule_line_and_the_fire_are_drawn() -> None:
    fired_at = PREMARKET + timedelta(minutes=20)
    message = AlertMessage(
        channel="console:default",
        title="NVDA −10.5%",
        alerts=(_alert("NVDA", -10.5, fired_at),),
        at=fired_at,
    )
    from bot.charts import alert_marks

    thresholds, fires = alert_marks(message)
    assert [(t.symbol, t.value) for t in thresholds] == [("NVDA", -10.0)]
    assert fires == [Fire("NVDA", fired_at, -10.5, "-10.5%")]
    fig = move_figure(
        {"NVDA": _path(PREMARKET, 30, 60, -11)},
        title=message.title,
        thresholds=thresholds,
        fires=fires,
    )
    assert fig is not None
    ax = fig.axes[0]
    dashed = [line for line in ax.get_lines() if line.get_linestyle() == "--"]
    assert [list(line.get_ydata()) for line in dashed] == [[-10.0, -10.0]]
    markers = [line for line in ax.get_lines() if line.get_marker() == "v"]
    assert [list(line.get_ydata()) for line in markers] == [[-10.5]]
    image = render_move_chart(
        {"NVDA": _path(PREMARKET, 30, 60, -11)}, title=message.title, message=message
    )
    assert image is not None
    assert image.startswith(b"\x89PNG")


@pytest.mark.parametrize(
    ("rule", "reference", "change", "expected"),
    [
        ("drop 10%", 100.0, -11.0, -10.0),
        ("rise 5%", 100.0, 6.0, 5.0),
        ("move 3%", 100.0, -4.0, -3.0),
        ("move 3%", 100.0, 4.0, 3.0),
        ("below 90", 100.0, -11.0, -10.0),
        ("above 110", 100.0, 11.0, 10.0),
        ("move 3% in 15m", 100.0, -4.0, None),  # a rolling window has no fixed line
        ("drop 2% from open", 100.0, -4.0, None),  # measured from the open, not this axis
        ("volume 3x", 100.0, 0.0, None),
    ],
)
def test_rule_thresholds_in_percent_of_the_previous_close(
    rule: str, reference: float, change: float, expected: float | None
) -> None:
    got = rule_threshold(rule, reference, change)
    assert got == (pytest.approx(expected) if expected is not None else None)


async def test_replay_charts_writes_each_messages_png_with_a_readable_axis(tmp_path) -> None:  # type: ignore[no-untyped-def]
    import io

    from rich.console import Console

    from bot.charts import MARKS_KEY, png_text
    from bot.replay import run_replay
    from bot.settings import Settings

    folder = tmp_path / "charts"
    folder.mkdir()
    # Charts off in the settings: asking for the files turns them on.
    settings = Settings.model_validate({"alerts": {"charts": False}})
    out = Console(file=io.StringIO(), width=100, color_system=None)
    result = await run_replay(settings, "deepseek-2025-01-27", console=out, charts_dir=folder)
    # The grouped alert and the digest each carry one chart, numbered in posting order.
    assert [path.name for path in result.charts] == ["001-moves.png", "002-digest.png"]
    assert sorted(folder.iterdir()) == result.charts
    for path in result.charts:
        assert path.read_bytes().startswith(b"\x89PNG\r\n\x1a\n")
    moves = result.charts[0].read_bytes()
    labels = png_text(moves)
    assert labels is not None
    assert len(labels) >= 2, labels
    assert len(set(labels)) == len(labels), labels
    _, message = result.messages[0]
    times = _as_times(labels, message.at)
    assert times == sorted(times), labels
    for alert in message.alerts:  # every fire lies on the axis
        assert times[0] <= alert.at.astimezone(NY) <= times[-1]
    # The chart under the alert draws the rules that fired and where they fired.
    marks = png_text(moves, MARKS_KEY)
    assert ["NVDA", "drop 10%", -10.0] in marks["lines"]
    assert {symbol for symbol, _, _ in marks["fires"]} == {"NVDA", "AVGO", "MSFT"}
    assert "written to" in out.file.getvalue()  # type: ignore[attr-defined]


def test_a_fire_on_the_last_whole_minute_is_not_cut_at_the_frame() -> None:
    fired_at = PREMARKET + timedelta(minutes=20)  # 04:20:00 exactly, the path's last point
    fig = move_figure(
        {"NVDA": _path(PREMARKET, 20, 60, -11)},
        title="NVDA",
        timezone=NY.key,
        fires=[Fire("NVDA", fired_at, -14.0, "-14.0%", move=-14.0)],
    )
    assert fig is not None
    labels = _tick_labels(fig)
    times = _as_times(labels, PREMARKET)
    assert times[0] == PREMARKET.astimezone(NY)
    assert times[-1] > fired_at.astimezone(NY)  # a tick beyond the marker: room for it
    assert len(set(labels)) == len(labels), labels
