"""Time the built-in DeepSeek replay end to end at speed=None, against parsing its JSON."""

from __future__ import annotations

import asyncio
import json
import time

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


def main() -> None:
    path = resolve_scenario(SCENARIO)
    # Baseline: the unavoidable part, parsing the file's JSON.
    baseline = _best(lambda: json.loads(path.read_text(encoding="utf-8")))
    quotes = asyncio.run(_replay_once())
    replay = _best(lambda: asyncio.run(_replay_once()))
    print(f"replay {SCENARIO} at speed=None: {replay * 1000:.1f} ms for {quotes} quotes")
    print(f"baseline json.loads of the file: {baseline * 1000:.1f} ms")
    print(f"ratio replay/baseline: {replay / baseline:.1f}x")


if __name__ == "__main__":
    main()
