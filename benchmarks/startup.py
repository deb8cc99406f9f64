"""Start-up cost of `marketbot --help` against a bare `python -c pass`, measured in one run."""

from __future__ import annotations

import statistics
import subprocess
import sys
import time

ROUNDS = 15


def _median_seconds(argv: list[str]) -> float:
    samples = []
    for _ in range(ROUNDS):
        started = time.perf_counter()
        subprocess.run(argv, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        samples.append(time.perf_counter() - started)
    return statistics.median(samples)


def main() -> None:
    _median_seconds([sys.executable, "-c", "pass"])  # warm the file cache for both
    baseline = _median_seconds([sys.executable, "-c", "pass"])
    helped = _median_seconds([sys.executable, "-m", "bot.cli", "--help"])
    print(f"python -c pass:     {baseline * 1000:7.1f} ms (median of {ROUNDS})")
    print(f"marketbot --help:   {helped * 1000:7.1f} ms (median of {ROUNDS})")
    print(f"ratio:              {helped / baseline:7.1f}x")


if __name__ == "__main__":
    main()
