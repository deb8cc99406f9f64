"""Writes the market days the catalyst benchmark replays besides DeepSeek (scenario format 2).

Usage: python tools/make_catalyst_days.py   (writes benchmarks/scenarios/*.json)

Both days are reconstructions for measuring attribution, not recordings: the direction and
rough size of each move and the gist and order of the headlines follow what was reported on
those days; exact prices, times, wording and volumes are illustrative. Each day mixes the
stories that explain the moves with filler (listicles, questions, neutral company news),
stories from before the previous close, and one name that moves with no story at all.
"""

from __future__ import annotations

import json
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

OUT = Path(__file__).resolve().parents[1] / "benchmarks" / "scenarios"
ET = ZoneInfo("America/New_York")
CME = {"timezone": "America/New_York", "regular": "18:00-17:00", "days": "mon-fri"}


def _path(start_pct: float, end_pct: float, minutes: int, cross_at: int = 0) -> list[float]:
    """Percent moves per minute: flat at 0 until ``cross_at``, then a jump and a drift."""
    out = []
    for m in range(minutes + 1):
        if m < cross_at:
            out.append(0.0 if m < cross_at - 1 else start_pct / 4)
        else:
            span = max(1, minutes - cross_at)
            out.append(start_pct + (end_pct - start_pct) * (m - cross_at) / span)
    return out


def _ticks(prev: float, path: list[float], volume_step: int) -> list[list[float]]:
    return [
        [m * 60, round(prev * (1 + pct / 100), 2), volume_step * (m + 1)]
        for m, pct in enumerate(path)
    ]


def _iso(day: datetime, hh: int, mm: int, offset_days: int = 0) -> str:
    when = (day + timedelta(days=offset_days)).replace(hour=hh, minute=mm)
    return when.isoformat()


def _day(
    *,
    name: str,
    description: str,
    day: datetime,
    minutes: int,
    closes: dict[str, float],
    paths: dict[str, list[float]],
    news: list[dict[str, Any]],
    watches: list[str],
    notes: list[str],
) -> dict[str, Any]:
    reference: dict[str, Any] = {}
    for symbol, close in closes.items():
        entry: dict[str, Any] = {"previous_close": close, "currency": "USD"}
        entry["exchange"] = "CME" if symbol.endswith("=F") else "NASDAQ"
        if symbol.endswith("=F"):
            entry["session_hours"] = CME
        reference[symbol] = entry
    return {
        "format": 2,
        "name": name,
        "description": description,
        "derivation": {
            "summary": "Reconstructed for the catalyst benchmark by tools/make_catalyst_days.py.",
            "notes": notes,
        },
        "start": day.isoformat(),
        "end": (day + timedelta(minutes=minutes)).isoformat(),
        "reference": reference,
        "ticks": {s: _ticks(closes[s], p, 1000 + 97 * i) for i, (s, p) in enumerate(paths.items())},
        "news": news,
        "default_watches": watches,
        "context_symbols": ["NQ=F", "ES=F"],
    }


def yen_carry() -> dict[str, Any]:
    """Monday 2024-08-05: the yen carry-trade unwind after a weak US jobs report."""
    day = datetime(2024, 8, 5, 4, 0, tzinfo=ET)
    minutes = 60
    closes = {
        "NVDA": 107.27,
        "AMD": 132.50,
        "TSLA": 207.67,
        "AAPL": 219.86,
        "NQ=F": 18_440.0,
        "ES=F": 5_373.0,
    }
    paths = {
        "NQ=F": _path(-2.8, -4.1, minutes),
        "ES=F": _path(-1.9, -2.9, minutes),
        "NVDA": _path(-7.5, -13.5, minutes),
        "AMD": _path(-6.2, -9.0, minutes),
        "TSLA": _path(-6.0, -9.5, minutes),
        # Apple holds up at first, then follows once Europe trades: a second group.
        "AAPL": _path(-5.4, -7.2, minutes, cross_at=40),
    }
    news = [
        {
            "time": _iso(day, 8, 30, -3),
            "title": "US payrolls miss forecasts; unemployment "
            "rate rises to 4.3%, stoking recession fears",
            "source": "illustrative",
            "symbols": [],
        },
        {
            "time": _iso(day, 9, 0, -2),
            "title": "Berkshire Hathaway halves its Apple stake as cash pile hits a record",
            "source": "illustrative",
            "symbols": ["AAPL"],
        },
        {
            "time": _iso(day, 10, 0, -1),
            "title": "Tesla to show its robotaxi at an October event",
            "source": "illustrative",
            "symbols": ["TSLA"],
        },
        {
            "time": _iso(day, 20, 30, -1),
            "title": "Nikkei plunges 12% as the yen carry trade unwinds, its worst day since 1987",
            "source": "illustrative",
            "symbols": [],
        },
        {
            "time": _iso(day, 1, 15),
            "title": "Nvidia, AMD and Tesla slide in premarket as yen carry trade unwind spreads",
            "source": "illustrative",
            "symbols": ["NVDA", "AMD", "TSLA"],
        },
        {
            "time": _iso(day, 2, 40),
            "title": "AMD unveils Ryzen AI laptop chips",
            "source": "illustrative",
            "symbols": ["AMD"],
        },
        {
            "time": _iso(day, 3, 20),
            "title": "Stock futures tumble as yen surge and recession fears spark a global rout",
            "source": "illustrative",
            "symbols": ["NQ=F", "ES=F"],
        },
        {
            "time": _iso(day, 3, 50),
            "title": "3 reasons to buy Nvidia stock on the dip",
            "source": "illustrative",
            "symbols": ["NVDA"],
        },
        {
            "time": _iso(day, 3, 55),
            "title": "Is Apple stock a buy after Berkshire's sale?",
            "source": "illustrative",
            "symbols": ["AAPL"],
        },
        {
            "time": _iso(day, 4, 30),
            "title": "Apple slips as Buffett's Berkshire cuts its stake in half",
            "source": "illustrative",
            "symbols": ["AAPL"],
        },
    ]
    return _day(
        name="yen-carry-2024-08-05",
        description="Monday 2024-08-05: the yen carry-trade unwind takes tech down premarket; "
        "Apple also carries Saturday's Berkshire news.",
        day=day,
        minutes=minutes,
        closes=closes,
        paths=paths,
        news=news,
        watches=[
            "/watch NVDA drop 5%",
            "/watch AMD drop 5%",
            "/watch TSLA drop 5%",
            "/watch AAPL drop 5%",
        ],
        notes=["Moves and headlines reconstructed from reports of the day; illustrative."],
    )


def crowdstrike() -> dict[str, Any]:
    """Friday 2024-07-19: a faulty CrowdStrike update crashes Windows machines worldwide."""
    day = datetime(2024, 7, 19, 4, 0, tzinfo=ET)
    minutes = 180
    closes = {"CRWD": 343.05, "MSFT": 440.37, "DIS": 97.80, "NQ=F": 19_900.0, "ES=F": 5_580.0}
    paths = {
        "NQ=F": _path(-0.3, -0.5, minutes),
        "ES=F": _path(-0.2, -0.4, minutes),
        "CRWD": _path(-11.0, -14.5, minutes),
        "MSFT": _path(-2.4, -2.9, minutes),
        # Disney slides at 06:00 with nothing in the news: the alert must say so.
        "DIS": _path(-5.5, -6.0, minutes, cross_at=180 - 60),
    }
    news = [
        {
            "time": _iso(day, 17, 5, -1),
            "title": "Netflix beats subscriber estimates, shares rise after hours",
            "source": "illustrative",
            "symbols": [],
        },
        {
            "time": _iso(day, 19, 0, -1),
            "title": "Disney to raise Disney+ prices in October",
            "source": "illustrative",
            "symbols": ["DIS"],
        },
        {
            "time": _iso(day, 1, 30),
            "title": "Faulty CrowdStrike update crashes Windows "
            "computers worldwide, grounding flights",
            "source": "illustrative",
            "symbols": ["CRWD", "MSFT"],
        },
        {
            "time": _iso(day, 3, 0),
            "title": "CrowdStrike shares sink premarket as the global IT "
            "outage hits airlines and banks",
            "source": "illustrative",
            "symbols": ["CRWD"],
        },
        {
            "time": _iso(day, 3, 40),
            "title": "Microsoft says it is investigating an issue affecting Microsoft 365 apps",
            "source": "illustrative",
            "symbols": ["MSFT"],
        },
        {
            "time": _iso(day, 4, 30),
            "title": "2 reasons to buy Microsoft stock for the long run",
            "source": "illustrative",
            "symbols": ["MSFT"],
        },
        {
            "time": _iso(day, 5, 0),
            "title": "Should you buy CrowdStrike stock on the dip?",
            "source": "illustrative",
            "symbols": ["CRWD"],
        },
        {
            "time": _iso(day, 6, 15),
            "title": "Disney's theme parks unveil new Avatar land plans",
            "source": "illustrative",
            "symbols": ["DIS"],
        },
    ]
    return _day(
        name="crowdstrike-2024-07-19",
        description="Friday 2024-07-19: a faulty CrowdStrike update grounds flights; CRWD and "
        "MSFT fall premarket, Disney slides later with no story.",
        day=day,
        minutes=minutes,
        closes=closes,
        paths=paths,
        news=news,
        watches=["/watch CRWD drop 8%", "/watch MSFT drop 2%", "/watch DIS drop 5%"],
        notes=[
            "Moves and headlines reconstructed from reports of the day; illustrative. "
            "Disney's slide is invented: a move no headline explains."
        ],
    )


def main() -> None:
    OUT.mkdir(parents=True, exist_ok=True)
    for scenario in (yen_carry(), crowdstrike()):
        path = OUT / f"{scenario['name']}.json"
        path.write_text(json.dumps(scenario, indent=1) + "\n")
        print(f"wrote {path}")


if __name__ == "__main__":
    main()
