"""PostgreSQL outbox throughput: rows/s drained by 1 and by 3 `marketbot worker`s, and the ratio.

Each run gets a fresh database holding the same backlog (30 channels; rows spread evenly) and
real ``bot.worker.Worker``s, each in its own thread with its own event loop and connections,
delivering into a platform that accepts at once: the figure is the queue's own throughput
(claim, render, confirm), not a chat platform's rate limit. The baseline is 1 worker, measured
in the same run. Needs MARKETBOT_TEST_POSTGRES_URL (skipped without it);
MARKETBOT_BENCH_OUTBOX_ROWS sets the backlog (default 600).
"""

from __future__ import annotations

import os
import sys

from bot.fakes.outbox_load import DrainReport, RecordingPlatform, drain, fill_outbox
from bot.fakes.pg_database import fresh_database
from bot.settings import Settings
from bot.store import SqlStore

CHANNELS = 30
ROWS = int(os.environ.get("MARKETBOT_BENCH_OUTBOX_ROWS", "600"))


def measure(admin_url: str, workers: int) -> DrainReport:
    with fresh_database(admin_url, prefix="marketbot_bench") as url:
        store = SqlStore(url)
        try:
            store.upgrade()
            rows = fill_outbox(store, channels=CHANNELS, per_channel=max(1, ROWS // CHANNELS))
            platform = RecordingPlatform()
            settings = Settings.model_validate({"database_url": url, "console": False})
            report = drain(settings, platform, workers=workers, expected=rows, timeout=600)
            keys = [key for _, _, key in platform.sent]
            if len(keys) != rows or len(set(keys)) != rows or platform.overlaps:
                raise SystemExit(
                    f"{workers} workers: {len(keys)} sent, {len(set(keys))} distinct of {rows},"
                    f" {platform.overlaps} overlapping sends"
                )
            return report
        finally:
            store.close()


def main() -> int:
    admin_url = os.environ.get("MARKETBOT_TEST_POSTGRES_URL")
    if not admin_url:
        print("pg outbox: skipped, MARKETBOT_TEST_POSTGRES_URL is not set")
        return 0
    one = measure(admin_url, 1)
    three = measure(admin_url, 3)
    print(f"pg outbox, {one.rows} rows over {CHANNELS} channels, each sent once, in channel order")
    print(f"  1 worker  (baseline): {one.rows_per_second:8.1f} rows/s ({one.seconds:.1f} s)")
    print(f"  3 workers:            {three.rows_per_second:8.1f} rows/s ({three.seconds:.1f} s)")
    print(f"  ratio 3 vs 1 worker:  {three.rows_per_second / one.rows_per_second:8.2f}x")
    return 0


if __name__ == "__main__":
    sys.exit(main())
