"""Replay speed: the built-in DeepSeek day's market data at speed=None against parsing its
JSON, and (``--full``) the whole ``marketbot replay deepseek-2025-01-27`` command, in wall and
CPU seconds, against the same process doing nothing but start (``marketbot --help``).

Run: .venv/bin/python benchmarks/replay_speed.py [--full] [--rounds N]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bot.market.replay import ReplayMarketData
from bot.scenarios import open_scenario, resolve_scenario

SCENARIO = "deepseek-2025-01-27"
ROUNDS = 20


async def _replay_once() -> int:
    replay = ReplayMarketData(open_scenario(SCENARIO))
    count = 0
    async for batch in replay.stream(list(replay.symbols)):
        count += len(batch)
    return count


def _best(fn: object, rounds: int = ROUNDS) -> float:
    assert callable(fn)
    best = float("inf")
    for _ in range(rounds):
        t0 = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - t0)
    return best


def _children_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def _command(args: list[str]) -> tuple[float, float]:
    """(wall, CPU) seconds of ``marketbot ARGS`` run as its own process, output discarded."""
    marketbot = [sys.executable, "-c", "from bot.cli import main; main()"]
    # A throw-away database and no settings file of the developer's: the built-in demo.
    env = {k: v for k, v in os.environ.items() if not k.startswith("MARKETBOT_")}
    cpu0, t0 = _children_cpu(), time.perf_counter()
    subprocess.run(
        [*marketbot, *args],
        check=True,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        env=env,
    )
    return time.perf_counter() - t0, _children_cpu() - cpu0


def full_command(rounds: int) -> None:
    replays = [_command(["replay", SCENARIO]) for _ in range(rounds)]
    starts = [_command(["--help"]) for _ in range(rounds)]
    for name, runs in ((f"marketbot replay {SCENARIO}", replays), ("marketbot --help", starts)):
        walls, cpus = [w for w, _ in runs], [c for _, c in runs]
        print(
            f"{name}: {statistics.median(walls):.2f} s wall ({min(walls):.2f}-{max(walls):.2f}), "
            f"{statistics.median(cpus):.2f} s CPU ({min(cpus):.2f}-{max(cpus):.2f}), "
            f"median of {rounds}"
        )
    ratio = statistics.median(c for _, c in replays) / statistics.median(c for _, c in starts)
    print(f"ratio replay/start-up CPU: {ratio:.1f}x")


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--full", action="store_true", help="also time the whole command")
    parser.add_argument("--rounds", type=int, default=3, help="runs of the whole command")
    args = parser.parse_args()
    path = resolve_scenario(SCENARIO)
    # Baseline: the unavoidable part, parsing the file's JSON.
    baseline = _best(lambda: json.loads(path.read_text(encoding="utf-8")))
    quotes = asyncio.run(_replay_once())
    replay = _best(lambda: asyncio.run(_replay_once()))
    print(f"replay {SCENARIO} at speed=None: {replay * 1000:.1f} ms for {quotes} quotes")
    print(f"baseline json.loads of the file: {baseline * 1000:.1f} ms")
    print(f"ratio replay/baseline: {replay / baseline:.1f}x")
    if args.full:
        full_command(args.rounds)


if __name__ == "__main__":
    main()
