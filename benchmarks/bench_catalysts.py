"""Share of grouped price alerts that carry the correct catalyst, and filler shown, by day.

Each day is replayed through the real pipeline (``marketbot replay``): the built-in DeepSeek
scenario and the days in benchmarks/scenarios/ (tools/make_catalyst_days.py). The answer key
lives here, not in the scenarios or the code under test: for each symbol, a pattern the story
that explains its move matches (None: no story explains it, so the message must say so), and
the day's filler titles. A group is correct when every moving symbol in its final message is
explained by a shown headline (or, for None, none is shown and the note is); a group shows
filler when any of its headlines is on the filler list.
Baseline in the same run: what messages showed before attribution, the three newest headlines
tagged with a group's symbols from the last 18 hours (``MarketState.headlines_for``).
"""

from __future__ import annotations

import asyncio
import io
import re
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path

from rich.console import Console

from alerts.compose import PRICE_KINDS
from alerts.models import AlertMessage, NewsItem
from alerts.scenario import Scenario
from bot.replay import run_replay
from bot.scenarios import open_scenario
from bot.settings import Settings

HERE = Path(__file__).resolve().parent

DEEPSEEK = re.compile(r"DeepSeek", re.IGNORECASE)
YEN = re.compile(r"\byen\b|carry trade|Nikkei|recession", re.IGNORECASE)
BERKSHIRE = re.compile(r"Berkshire|Buffett", re.IGNORECASE)
OUTAGE = re.compile(r"CrowdStrike|outage", re.IGNORECASE)


@dataclass(frozen=True)
class Day:
    scenario: str
    explains: dict[str, re.Pattern[str] | None]
    filler: frozenset[str] = frozenset()
    default: re.Pattern[str] | None = None
    commands: tuple[str, ...] = ()  # instead of the scenario's default watches


DAYS = [
    Day(
        "deepseek-2025-01-27",
        {},
        default=DEEPSEEK,
        # The whole AI basket, Amsterdam and the futures too: more groups than the defaults.
        commands=(
            "/watch NVDA drop 10%",
            "/watch AVGO drop 10%",
            "/watch MSFT drop 5%",
            "/basket create ai NVDA AVGO AMD MSFT GOOGL META ASML",
            "/watch basket:ai drop 5%",
            "/watch ASML.AS drop 5%",
            "/watch NQ=F drop 3%",
        ),
    ),
    Day(
        str(HERE / "scenarios" / "yen-carry-2024-08-05.json"),
        {"AAPL": BERKSHIRE},
        default=YEN,
        filler=frozenset(
            {
                "3 reasons to buy Nvidia stock on the dip",
                "Is Apple stock a buy after Berkshire's sale?",
                "Tesla to show its robotaxi at an October event",
                "AMD unveils Ryzen AI laptop chips",
            }
        ),
    ),
    Day(
        str(HERE / "scenarios" / "crowdstrike-2024-07-19.json"),
        {"CRWD": OUTAGE, "MSFT": OUTAGE, "DIS": None},
        filler=frozenset(
            {
                "2 reasons to buy Microsoft stock for the long run",
                "Should you buy CrowdStrike stock on the dip?",
                "Disney to raise Disney+ prices in October",
                "Disney's theme parks unveil new Avatar land plans",
                "Netflix beats subscriber estimates, shares rise after hours",
            }
        ),
    ),
]


def verdict(day: Day, symbols: set[str], headlines: list[NewsItem], note: bool) -> bool:
    for symbol in symbols:
        pattern = day.explains.get(symbol, day.default)
        if pattern is None:
            if headlines or not note:
                return False
        elif not any(pattern.search(h.title) for h in headlines):
            return False
    return True


def newest_tagged(
    news: tuple[NewsItem, ...], symbols: set[str], message: AlertMessage
) -> list[NewsItem]:
    return [
        item
        for item in sorted(news, key=lambda i: i.published, reverse=True)
        if symbols & set(item.symbols)
        and timedelta(0) <= message.at - item.published <= timedelta(hours=18)
    ][:3]


async def measure(day: Day) -> tuple[int, int, int, int, int]:
    scenario = open_scenario(day.scenario)
    assert isinstance(scenario, Scenario)
    result = await run_replay(
        Settings(console=False),
        day.scenario,
        commands=day.commands,
        console=Console(file=io.StringIO()),
    )
    final: dict[str, AlertMessage] = {}
    for message_id, message in result.messages:
        final[message_id] = message  # an edit replaces what the group shows
    groups = correct = filler = base_correct = base_filler = 0
    for message in final.values():
        symbols = {a.symbol for a in message.alerts if a.kind in PRICE_KINDS}
        if not symbols:
            continue
        groups += 1
        shown = list(message.headlines)
        correct += verdict(day, symbols, shown, message.news_note is not None)
        filler += any(h.title in day.filler for h in shown)
        old = newest_tagged(scenario.news, symbols, message)
        base_correct += verdict(day, symbols, old, False)
        base_filler += any(h.title in day.filler for h in old)
    return groups, correct, filler, base_correct, base_filler


async def main() -> None:
    totals = [0, 0, 0, 0, 0]
    for day in DAYS:
        groups, correct, filler, base_correct, base_filler = await measure(day)
        totals = [
            t + v
            for t, v in zip(
                totals, (groups, correct, filler, base_correct, base_filler), strict=True
            )
        ]
        name = Path(day.scenario).stem
        print(
            f"{name}: {correct}/{groups} groups with the correct catalyst, {filler} with filler"
            f" (baseline {base_correct}/{groups}, {base_filler} with filler)"
        )
    groups, correct, filler, base_correct, base_filler = totals
    share = correct / groups
    base_share = base_correct / groups
    print(
        f"catalyst share: {share:.0%} ({correct}/{groups}), filler shown in {filler} groups;"
        f" target >= 90%, no filler"
    )
    print(
        f"  baseline (newest tagged, 18 h): {base_share:.0%} ({base_correct}/{groups}),"
        f" filler in {base_filler}"
    )
    ratio = share / base_share if base_share else float("inf")
    print(f"  ratio: {ratio:.1f}x the baseline's share")


if __name__ == "__main__":
    asyncio.run(main())
