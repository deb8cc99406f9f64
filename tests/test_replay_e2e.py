"""The DeepSeek morning through the whole pipeline: scenario -> engine -> store -> console."""

from __future__ import annotations

import io
import json
from datetime import UTC, datetime
from pathlib import Path

import pytest
from rich.console import Console

from alerts.models import AlertKind
from bot.replay import ReplayError, run_replay
from bot.scenarios import open_scenario
from bot.settings import Settings

SCENARIO = "deepseek-2025-01-27"


def _console() -> Console:
    return Console(file=io.StringIO(), width=100, color_system=None)


async def test_default_watches_give_one_grouped_premarket_alert_then_the_digest() -> None:
    out = _console()
    result = await run_replay(Settings(), SCENARIO, console=out)
    # One grouped alert (never a second for the same crossing), then the 08:00 digest that the
    # scenario's default commands turn on.
    assert len(result.messages) == 2
    _, message = result.messages[0]
    scenario = open_scenario(SCENARIO)
    watched = {line.split()[1] for line in scenario.default_watches if line.startswith("/watch")}
    assert {alert.symbol for alert in message.alerts} == watched
    for alert in message.alerts:
        assert alert.kind is AlertKind.FIRING
        assert alert.session is not None
        assert alert.session.value == "pre"
        reference = scenario.reference[alert.symbol].previous_close
        assert alert.reference_price == pytest.approx(reference)
        assert alert.price is not None
        assert alert.change_pct is not None
        assert alert.change_pct == pytest.approx((alert.price / reference - 1) * 100)
        # Within minutes of 04:00 ET (09:00 UTC), not at the open.
        assert alert.at.hour == 9
        assert alert.at.minute < 10
    assert [line.symbol for line in message.context] == ["NQ=F", "ES=F", "YM=F"]
    assert any("DeepSeek" in item.title for item in message.headlines)
    text = out.file.getvalue()  # type: ignore[attr-defined]
    for symbol in watched:
        assert symbol in text
    assert "Nasdaq-100 futures" in text
    _, digest = result.messages[1]
    assert digest.at == datetime(2025, 1, 27, 13, 0, tzinfo=UTC)  # 08:00 EST
    assert digest.title.startswith("Premarket digest Mon 2025-01-27")
    assert all(alert.kind is AlertKind.DIGEST for alert in digest.alerts)
    assert {alert.symbol for alert in digest.alerts} == watched
    assert [line.symbol for line in digest.context] == ["ES=F", "NQ=F", "YM=F", "^VIX"]
    assert any("DeepSeek" in item.title for item in digest.headlines)


async def test_the_futures_fall_as_soon_as_cme_reopens_on_sunday() -> None:
    scenario = open_scenario(SCENARIO)
    first = scenario.ticks["NQ=F"][0]
    assert first.time == datetime(2025, 1, 26, 23, 0, tzinfo=UTC)  # Sunday 18:00 ET
    assert first.price < scenario.reference["NQ=F"].previous_close_at(first.time)  # type: ignore[operator]
    assert scenario.reference["NQ=F"].session_hours.session_at(first.time).value == "regular"


async def test_replaying_twice_into_one_database_posts_the_digest_once(tmp_path: Path) -> None:
    # A few minutes around 08:00 of the DeepSeek Monday: the whole day twice would be slow.
    path = tmp_path / "eight.json"
    doc = {
        "format": 2,
        "name": "eight-oclock",
        "start": "2025-01-27T07:58:00-05:00",
        "end": "2025-01-27T08:02:00-05:00",
        "reference": {"NVDA": {"previous_closes": {"2025-01-27": 142.62}}},
        "ticks": {"NVDA": [[0, 125.0], [60, 124.8], [120, 124.6], [180, 124.5]]},
        "default_watches": ["/watch NVDA drop 20%", "/digest on 08:00"],
    }
    path.write_text(json.dumps(doc))
    url = f"sqlite:///{tmp_path / 'kept.db'}"
    first = await run_replay(Settings(), str(path), console=_console(), database_url=url)
    second = await run_replay(Settings(), str(path), console=_console(), database_url=url)
    [(_, digest)] = first.messages
    assert [a.symbol for a in digest.alerts] == ["NVDA"]
    assert digest.at == datetime(2025, 1, 27, 13, 0, tzinfo=UTC)
    # The same morning again: the digest of that day is already recorded.
    assert second.messages == []


async def test_cmd_replaces_the_default_watches() -> None:
    result = await run_replay(
        Settings(), SCENARIO, commands=["/watch AMD drop 5%"], console=_console()
    )
    symbols = [alert.symbol for _, message in result.messages for alert in message.alerts]
    assert symbols == ["AMD"]
    assert result.replies == ["Watching *AMD*: alert on `drop 5%` (watch #1)."]


async def test_escalation_is_a_follow_up_not_a_repeat() -> None:
    # NVDA goes from -10% at 04:02 to -13% by the open: one fire, then one follow-up at -12.5%
    # (a 2.5-point step), and nothing else.
    settings = Settings.model_validate({"alerts": {"escalation_step_pct": 2.5}})
    result = await run_replay(
        settings, SCENARIO, commands=["/watch NVDA drop 10%"], console=_console()
    )
    kinds = [alert.kind for _, message in result.messages for alert in message.alerts]
    assert kinds.count(AlertKind.FIRING) == 1
    assert 1 <= kinds.count(AlertKind.ESCALATED) <= 2
    keys = [alert.key for _, message in result.messages for alert in message.alerts]
    assert len(set(keys)) == len(keys)


async def test_render_slack_prints_block_kit_json() -> None:
    out, payloads = _console(), io.StringIO()
    await run_replay(Settings(), SCENARIO, render="slack", console=out, payloads=payloads)
    lines = [json.loads(line) for line in payloads.getvalue().splitlines()]
    # The alert, then the 08:00 digest; the prose stays on the console.
    assert [line["request"] for line in lines] == ["chat.postMessage"] * 2
    for line in lines:
        assert line["payload"]["blocks"][0]["type"] == "header"
    assert "chat.postMessage" not in out.file.getvalue()  # type: ignore[attr-defined]


async def test_an_unknown_scenario_is_a_clear_error() -> None:
    with pytest.raises(ReplayError, match="built-in scenarios: deepseek-2025-01-27"):
        await run_replay(Settings(), "no-such-day", console=_console())


async def test_a_broken_scenario_file_is_a_clear_error(tmp_path: Path) -> None:
    path = tmp_path / "broken.json"
    path.write_text('{"name": "x"}')
    with pytest.raises(ReplayError, match=r"broken\.json"):
        await run_replay(Settings(), str(path), console=_console())


async def test_a_mute_ending_between_ticks_is_summarized_at_its_end(tmp_path: Path) -> None:
    # The replay's clock jumps from event to event; a mute's end is one of them, so its
    # summary goes out at 07:59:30, not at the next tick or the next minute.
    path = tmp_path / "mute.json"
    doc = {
        "format": 2,
        "name": "short-mute",
        "start": "2025-01-27T07:58:00-05:00",
        "end": "2025-01-27T08:02:00-05:00",
        "reference": {"NVDA": {"previous_closes": {"2025-01-27": 142.62}}},
        "ticks": {"NVDA": [[0, 125.0], [60, 124.8], [120, 124.6], [180, 124.5]]},
        "default_watches": ["/watch NVDA drop 10%", "/mute NVDA 90s"],
    }
    path.write_text(json.dumps(doc))
    result = await run_replay(Settings(), str(path), console=_console())
    [(_, summary)] = result.messages
    assert summary.title.startswith("While NVDA was muted: 1 alert")
    assert summary.at == datetime(2025, 1, 27, 12, 59, 30, tzinfo=UTC)


async def test_replies_and_description_are_shown_as_text_not_markup(tmp_path: Path) -> None:
    # Rich markup in what a user wrote ("[/]" in a note or a scenario's description) crashed the
    # replay with a MarkupError; the replies' Slack-style asterisks and backticks showed raw.
    path = tmp_path / "brackets.json"
    path.write_text(
        json.dumps(
            {
                "name": "brackets",
                "description": "A [bold]day[/] with [/] in it",
                "start": "2025-03-03T04:00:00-05:00",
                "end": "2025-03-03T04:05:00-05:00",
                "reference": {"NVDA": {"previous_close": 120.0}},
                "ticks": {"NVDA": [[0, 119.0], [60, 118.5]]},
            }
        )
    )
    out = _console()
    result = await run_replay(
        Settings(), str(path), commands=["/watch NVDA drop 5% -- see [/] later"], console=out
    )
    text = out.file.getvalue()  # type: ignore[attr-defined]
    assert "Replaying brackets: A [bold]day[/] with [/] in it" in text
    assert "> /watch NVDA drop 5% -- see [/] later" in text
    assert result.replies[0].startswith("Watching *NVDA*: alert on `drop 5%`")
    assert "Watching NVDA: alert on drop 5%" in text
    assert "*NVDA*" not in text
