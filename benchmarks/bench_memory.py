"""Resident memory of the engine holding 100,000 watches (target <= 300 MB for the process).

Baseline, in the same run: the same interpreter with the core imported and no watches.
Run: .venv/bin/python benchmarks/bench_memory.py [--watches N]
"""

from __future__ import annotations

import argparse
import gc
import random
import resource
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from alerts.engine import Engine
from alerts.models import MarketSession, Quote, Watch

T0 = datetime(2025, 1, 27, 9, 0, tzinfo=UTC)


def rss_mb() -> float:
    """Current resident set size from /proc (falls back to the peak from getrusage)."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024.0
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def run(n_watches: int = 100_000, n_symbols: int = 5_000) -> list[tuple[str, float, str]]:
    gc.collect()
    before = rss_mb()
    rng = random.Random(3)
    kinds = ["drop {}%", "rise {}%", "move {}%", "drop {}% in 15m", "above {}", "below {}"]
    # Distinct string objects per watch, as rows loaded from the store would be.
    watches = []
    for i in range(n_watches):
        pattern = rng.choice(kinds)
        value = rng.randint(1, 20) if "%" in pattern else rng.randint(50, 150)
        watches.append(
            Watch(
                i + 1,
                f"slack:T0:C{i % 2000:05d}",
                f"S{rng.randrange(n_symbols):04d}",
                pattern.format(value),
                T0,
                created_by=f"U{i:07d}",
            )
        )
    engine = Engine()
    engine.load(watches, [])
    del watches
    symbols = sorted(engine.symbols())
    # Two ticks: every symbol quoted, then 10% of them down 12% (states and history exist).
    engine.on_quotes(
        [Quote(s, 100.0, T0, MarketSession.REGULAR, 100.0, open=100.0) for s in symbols], T0
    )
    later = T0 + timedelta(minutes=1)
    moved = set(rng.sample(symbols, len(symbols) // 10))
    ev = engine.on_quotes(
        [
            Quote(s, 88.0 if s in moved else 100.0, later, MarketSession.REGULAR, 100.0)
            for s in symbols
        ],
        later,
    )
    gc.collect()
    after = rss_mb()
    return [
        ("watches", float(n_watches), ""),
        ("states held", float(len(engine.states())), ""),
        ("alerts in the storm tick", float(len(ev.alerts)), ""),
        ("baseline RSS (core imported)", before, "MB"),
        ("RSS holding the watches", after, "MB"),
        ("engine cost", after - before, "MB"),
        ("per watch", (after - before) * 1024 * 1024 / n_watches, "bytes"),
        ("peak RSS", resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0, "MB"),
    ]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--watches", type=int, default=100_000)
    args = parser.parse_args()
    figures = run(args.watches)
    for name, value, unit in figures:
        print(f"{name:>30}: {value:,.1f} {unit}".rstrip())
    peak = {n: v for n, v, _ in figures}["peak RSS"]
    ok = peak <= 300
    print(f"{'target (peak <= 300 MB)':>30}: {'met' if ok else 'MISSED'}")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
