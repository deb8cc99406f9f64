"""Generate bot/scenarios/deepseek-2025-01-27.json, the built-in DeepSeek premarket replay.

The seed article (../shared/seed/) reports how far each name had fallen early on Monday
2025-01-27; it gives no paths, closes (beyond what its figures imply) or volumes. This script
is the record of how those gaps were filled, so anyone can regenerate the file or shape a
variant:

* Previous closes: NVDA 142.62 and NQ=F 21,891.25 follow from the reported "-13% to $124" and
  "-4.3% to 20,950"; the others are plausible Friday 2025-01-24 closes, not looked up.
* Each path starts at a fraction ``gap`` of its target move on its first tick (the news broke
  over the weekend, so most of the drop is there when trading starts), then closes the rest
  with a fast exponential leg (``weight``, ``tau`` minutes) plus a linear drift, reaching the
  target exactly at ``by``; it then holds it.
* Seeded Ornstein-Uhlenbeck noise (mean-reverting, so it never wanders far) is added, faded to
  zero around ``by`` and the last tick so the reported figure is hit exactly there.
* Volumes (US stocks and ASML.AS) are illustrative: a decaying per-minute profile, cumulative.
* Format 2: the file starts at CME's Sunday 18:00 ET reopen, where the futures gap down and
  keep sliding overnight (5-minute points until 03:00 ET, 1-minute after). The VIX (not in
  the article) is reconstructed from 03:15 ET. The default commands turn the 08:00 digest on.

Run ``python tools/make_deepseek_scenario.py`` to rewrite the file, ``--check`` to verify that
the committed file is what this script produces.
"""

from __future__ import annotations

import argparse
import json
import math
import random
import sys
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from zoneinfo import ZoneInfo

ROOT = Path(__file__).resolve().parent.parent
OUTPUT = ROOT / "bot" / "scenarios" / "deepseek-2025-01-27.json"

NAME = "deepseek-2025-01-27"
ET = ZoneInfo("America/New_York")
START = datetime(2025, 1, 26, 18, 0, tzinfo=ET)  # Sunday: CME Globex reopens
AMS_OPEN = datetime(2025, 1, 27, 3, 0, tzinfo=ET)  # 09:00 CET: the Amsterdam open
VIX_FIRST = datetime(2025, 1, 27, 3, 15, tzinfo=ET)  # Cboe's early index values
DENSE_FROM = AMS_OPEN  # 5-minute points before this, 1-minute points after
OVERNIGHT_STEP_MIN = 5
TRADING_DAY = "2025-01-27"  # the day every previous close below is the reference for
END = datetime(2025, 1, 27, 9, 30, tzinfo=ET)  # the US open
US_FIRST = datetime(2025, 1, 27, 4, 0, tzinfo=ET)  # US premarket opens
LAST = datetime(2025, 1, 27, 9, 29, tzinfo=ET)  # last premarket minute
ASML_AS_BY = datetime(2025, 1, 27, 5, 0, tzinfo=ET)  # 11:00 CET, two hours after the open

US_HOURS = {
    "timezone": "America/New_York",
    "pre": "04:00-09:30",
    "regular": "09:30-16:00",
    "post": "16:00-20:00",
    "days": "mon-fri",
}
CME_HOURS = {"timezone": "America/New_York", "regular": "18:00-17:00", "days": "mon-fri"}
AMS_HOURS = {"timezone": "Europe/Amsterdam", "regular": "09:00-17:30", "days": "mon-fri"}
VIX_HOURS = {
    "timezone": "America/New_York",
    "pre": "03:15-09:30",
    "regular": "09:30-16:15",
    "days": "mon-fri",
}


@dataclass(frozen=True)
class Shape:
    """Timing of one path (see the module docstring)."""

    first: datetime  # first tick
    by: datetime  # target reached
    gap: float  # fraction of the target move already there on the first tick
    weight: float  # share of the remainder closed by the fast exponential leg
    tau: float  # minutes, time constant of that leg


@dataclass(frozen=True)
class SymbolPath:
    """How one symbol's premarket is shaped."""

    symbol: str
    previous_close: float
    currency: str
    exchange: str
    hours: dict[str, str]
    target_pct: float
    basis: str
    shape: Shape
    noise: float  # OU shock size, percentage points
    tick_size: float
    volume_per_min: int = 0  # 0: no volume column


STOCK = Shape(first=US_FIRST, by=LAST, gap=0.70, weight=0.6, tau=3.0)
# Futures drop at the reopen (28% of the morning's move in the first print), fall fast for an
# hour and then drift down through the night to the reported figure at 09:29.
FUTURE = Shape(first=START, by=LAST, gap=0.28, weight=0.35, tau=45.0)
ASML_AS = Shape(first=AMS_OPEN, by=ASML_AS_BY, gap=0.60, weight=0.5, tau=15.0)
VIX = Shape(first=VIX_FIRST, by=LAST, gap=0.65, weight=0.5, tau=20.0)

PATHS = (
    SymbolPath(
        "NQ=F",
        21891.25,
        "USD",
        "CME",
        CME_HOURS,
        -4.3,
        "reported: Nasdaq 100 futures 'plummeted by 4.3% to 20,950'",
        noise=0.03,
        tick_size=0.25,
        shape=FUTURE,
    ),
    SymbolPath(
        "ES=F",
        6133.50,
        "USD",
        "CME",
        CME_HOURS,
        -2.5,
        "reported: S&P 500 futures 'dropped around 2.5%'",
        noise=0.02,
        tick_size=0.25,
        shape=FUTURE,
    ),
    SymbolPath(
        "YM=F",
        44670.0,
        "USD",
        "CBOT",
        CME_HOURS,
        -0.8,
        "reported: Dow futures 'almost 0.8%'",
        noise=0.015,
        tick_size=1.0,
        shape=FUTURE,
    ),
    SymbolPath(
        "NVDA",
        142.62,
        "USD",
        "NASDAQ",
        US_HOURS,
        -13.0,
        "reported: Nvidia 'dropping nearly 13% to $124'",
        noise=0.06,
        tick_size=0.01,
        volume_per_min=600_000,
        shape=STOCK,
    ),
    SymbolPath(
        "AVGO",
        240.66,
        "USD",
        "NASDAQ",
        US_HOURS,
        -12.9,
        "reported: Broadcom 'slumped ... 12.9% in premarket'",
        noise=0.06,
        tick_size=0.01,
        volume_per_min=120_000,
        shape=STOCK,
    ),
    SymbolPath(
        "AMD",
        123.82,
        "USD",
        "NASDAQ",
        US_HOURS,
        -6.3,
        "reported: AMD 'slumped 6.3% ... in premarket'",
        noise=0.05,
        tick_size=0.01,
        volume_per_min=150_000,
        shape=STOCK,
    ),
    SymbolPath(
        "MSFT",
        444.06,
        "USD",
        "NASDAQ",
        US_HOURS,
        -6.7,
        "reported: Microsoft 'fell 6.7%'",
        noise=0.04,
        tick_size=0.01,
        volume_per_min=60_000,
        shape=STOCK,
    ),
    SymbolPath(
        "GOOGL",
        200.21,
        "USD",
        "NASDAQ",
        US_HOURS,
        -4.6,
        "reported: Google 'fell ... 4.6%'",
        noise=0.04,
        tick_size=0.01,
        volume_per_min=50_000,
        shape=STOCK,
    ),
    SymbolPath(
        "META",
        647.49,
        "USD",
        "NASDAQ",
        US_HOURS,
        -5.5,
        "reported: Meta 'fell ... 5.5%'",
        noise=0.04,
        tick_size=0.01,
        volume_per_min=40_000,
        shape=STOCK,
    ),
    SymbolPath(
        "ASML",
        741.40,
        "USD",
        "NASDAQ",
        US_HOURS,
        -10.6,
        "reconstructed: the US ADR is not in the article; it follows ASML.AS's reported move",
        noise=0.05,
        tick_size=0.01,
        volume_per_min=8_000,
        shape=STOCK,
    ),
    SymbolPath(
        "ASML.AS",
        714.70,
        "EUR",
        "Euronext Amsterdam",
        AMS_HOURS,
        -10.62,
        "reported: ASML 'saw a 10.62% decrease within two hours post-European market opening'",
        shape=ASML_AS,
        noise=0.05,
        tick_size=0.01,
        volume_per_min=20_000,
    ),
    SymbolPath(
        "^VIX",
        14.85,
        "USD",
        "Cboe",
        VIX_HOURS,
        31.0,
        "reconstructed: the VIX is not in the article; a rise to about 19.5 before the open",
        shape=VIX,
        noise=0.25,
        tick_size=0.01,
    ),
)

OU_REVERSION = 0.15  # per minute; keeps the noise's spread near noise / sqrt(2 * 0.15)
NOISE_FADE_MIN = 15.0  # minutes over which noise fades to zero at `by` and at the last tick

NEWS = (
    {
        "time": "2025-01-26T12:00:00-05:00",
        "title": "DeepSeek's iPhone app tops the U.S. App Store's free charts, passing ChatGPT",
        "source": "seed article (paraphrased)",
        "symbols": [],
    },
    {
        "time": "2025-01-26T18:05:00-05:00",
        "title": (
            "Stock futures fall as trading resumes, Nasdaq futures lead the drop on DeepSeek "
            "worries"
        ),
        "source": "reconstructed",
        "symbols": ["NQ=F", "ES=F", "YM=F"],
    },
    {
        "time": "2025-01-27T03:45:00-05:00",
        "title": (
            "Tech and AI stocks dive in premarket after Chinese startup DeepSeek's R1 model "
            "rivals OpenAI on less powerful chips"
        ),
        "source": "seed article (paraphrased)",
        "symbols": ["NVDA", "AVGO", "AMD", "MSFT", "GOOGL", "META", "ASML", "NQ=F"],
    },
    {
        "time": "2025-01-27T05:00:00-05:00",
        "title": "ASML falls 10.6% in Amsterdam within two hours of the European open",
        "source": "seed article (paraphrased)",
        "symbols": ["ASML.AS", "ASML"],
    },
    {
        "time": "2025-01-27T07:00:00-05:00",
        "title": (
            "Challenging U.S. AI Dominance: Surge of Chinese Startup DeepSeek Threatens Tech "
            "Shares, Competing Against OpenAI"
        ),
        "source": "seed article",
        "symbols": [
            "NVDA",
            "MSFT",
            "GOOGL",
            "META",
            "AMD",
            "AVGO",
            "ASML.AS",
            "NQ=F",
            "ES=F",
            "YM=F",
        ],
    },
)

# All three cross at 04:02 ET and stay past their re-arm bands, so the demo is one message;
# AMD (-5% at 04:03) is left out so `--cmd "/watch AMD drop 5%"` visibly changes the outcome.
DEFAULT_WATCHES = (
    "/watch NVDA drop 10%",
    "/watch AVGO drop 10%",
    "/watch MSFT drop 5%",
    "/digest on 08:00",
)
CONTEXT_SYMBOLS = ("NQ=F", "ES=F", "YM=F")


def _minutes(a: datetime, b: datetime) -> float:
    return (b - a).total_seconds() / 60.0


def shape(p: SymbolPath, t: float) -> float:
    """Fraction of the target move reached ``t`` minutes after the first tick."""
    s = p.shape
    span = _minutes(s.first, s.by)
    if t >= span:
        return 1.0
    rest = s.weight * math.exp(-t / s.tau) + (1.0 - s.weight) * (1.0 - t / span)
    return 1.0 - (1.0 - s.gap) * rest


def _round_to(value: float, step: float) -> float:
    digits = max(0, -math.floor(math.log10(step) + 1e-9)) if step < 1 else 0
    return round(round(value / step) * step, digits)


def _minute_grid(p: SymbolPath) -> list[int]:
    """Minutes after the first tick: every 5 before ``DENSE_FROM``, every minute after."""
    total = int(_minutes(p.shape.first, LAST))
    dense = max(0, int(_minutes(p.shape.first, DENSE_FROM)))
    return [*range(0, min(dense, total), OVERNIGHT_STEP_MIN), *range(dense, total + 1)]


def series(p: SymbolPath) -> list[list[float | int]]:
    """Points ``[seconds after START, price(, cumulative volume)]`` for one symbol."""
    rng = random.Random(f"{NAME}:{p.symbol}")
    total = int(_minutes(p.shape.first, LAST))
    span = _minutes(p.shape.first, p.shape.by)
    noise = 0.0
    volume = 0
    points: list[list[float | int]] = []
    for m in _minute_grid(p):
        fade = min(1.0, abs(m - span) / NOISE_FADE_MIN, (total - m) / NOISE_FADE_MIN)
        pct = p.target_pct * shape(p, m) + noise * fade
        price = _round_to(p.previous_close * (1.0 + pct / 100.0), p.tick_size)
        offset = int((p.shape.first - START).total_seconds()) + 60 * m
        point: list[float | int] = [offset, price]
        if p.volume_per_min:
            burst = 0.25 + 0.75 * math.exp(-m / 30.0)
            volume += int(p.volume_per_min * burst * (0.6 + 0.8 * rng.random()))
            point.append(volume)
        points.append(point)
        noise = noise * (1.0 - OU_REVERSION) + rng.gauss(0.0, p.noise)
    return points


def document() -> dict[str, object]:
    notes = [
        "Reported by the seed article (../shared/seed/000_c157d5d9cc4c01ba.txt): the percentage "
        "moves in 'targets', NVDA's $124 and NQ's 20,950.",
        "Reconstructed: the previous closes. NVDA 142.62 and NQ=F 21,891.25 are implied by the "
        "reported figures (-13% = $124.08, -4.3% = 20,950); the other closes are plausible "
        "Friday 2025-01-24 values, not looked up.",
        "Reconstructed: every path between the first tick and the target, the ASML US ADR move "
        "(set to ASML.AS's), the news times and wording (paraphrases of the article), and all "
        "volumes (illustrative).",
        "Shape: most of each stock's move is there on the first tick (US premarket 04:00 ET; "
        "ASML.AS from 03:00 ET = 09:00 CET), the rest comes in a fast leg plus a drift; seeded "
        "mean-reverting noise fades out where the target is met. US symbols and futures meet "
        "their targets on the last premarket minute (09:29 ET); ASML.AS at 11:00 CET and then "
        "holds. Regenerate with tools/make_deepseek_scenario.py.",
        "Format 2: the file opens at CME's Sunday 18:00 ET reopen. The futures fall at once "
        "(about 28% of the morning's move on the first print: NQ -1.2%), fast for an hour, "
        "then slide through the night (5-minute points until 03:00 ET). Reconstructed: the "
        "overnight path, the Sunday 18:05 futures headline, and the VIX (close 14.85, not "
        "looked up; from 03:15 ET to about +31% before the open).",
        "The default commands also turn on the 08:00 ET premarket digest, so the replay posts "
        "it between the 04:0x alert and the open.",
    ]
    return {
        "format": 2,
        "name": NAME,
        "description": (
            "Monday 2025-01-27: DeepSeek's R1 news takes Nasdaq-100 futures down from the "
            "Sunday evening reopen to -4.3%, and NVDA down 13% before the US open; ASML falls "
            "10.6% in Amsterdam; the 08:00 digest."
        ),
        "derivation": {
            "summary": (
                "Reported premarket moves from the seed article; previous closes, paths, news "
                "times and volumes reconstructed (1-minute points, interpolated with seeded "
                "noise) by tools/make_deepseek_scenario.py."
            ),
            "notes": notes,
            "targets": {
                p.symbol: {
                    "change_pct": p.target_pct,
                    "by": p.shape.by.isoformat(),
                    "basis": p.basis,
                }
                for p in PATHS
            },
        },
        "start": START.isoformat(),
        "end": END.isoformat(),
        "reference": {
            p.symbol: {
                "previous_closes": {TRADING_DAY: p.previous_close},
                "currency": p.currency,
                "exchange": p.exchange,
                "session_hours": p.hours,
            }
            for p in PATHS
        },
        "news": list(NEWS),
        "default_watches": list(DEFAULT_WATCHES),
        "context_symbols": list(CONTEXT_SYMBOLS),
        "ticks": {p.symbol: series(p) for p in PATHS},
    }


def render(doc: dict[str, object]) -> str:
    """JSON with one line per 8 tick points: readable in a diff, small on disk."""
    ticks = doc["ticks"]
    assert isinstance(ticks, dict)
    head = {k: v for k, v in doc.items() if k != "ticks"}
    text = json.dumps(head, indent=2, ensure_ascii=False)
    blocks = []
    for symbol, points in ticks.items():
        rows = [
            "      " + ", ".join(json.dumps(pt, separators=(",", ":")) for pt in points[i : i + 8])
            for i in range(0, len(points), 8)
        ]
        blocks.append(f"    {json.dumps(symbol)}: [\n" + ",\n".join(rows) + "\n    ]")
    return text[:-2] + ',\n  "ticks": {\n' + ",\n".join(blocks) + "\n  }\n}\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="fail if the file is out of date")
    parser.add_argument("--output", type=Path, default=OUTPUT)
    args = parser.parse_args(argv)

    text = render(document())
    sys.path.insert(0, str(ROOT))
    from alerts.scenario import load_scenario  # validate before anything is written

    load_scenario(json.loads(text))
    if args.check:
        current = args.output.read_text(encoding="utf-8") if args.output.exists() else ""
        if current != text:
            print(f"{args.output} is out of date: run tools/make_deepseek_scenario.py")
            return 1
        print(f"{args.output} is up to date")
        return 0
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(text, encoding="utf-8")
    print(f"wrote {args.output} ({len(text.encode()) // 1024} KiB)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
