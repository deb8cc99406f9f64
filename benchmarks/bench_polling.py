"""HTTP requests per polling cycle (50 and 500 symbols) at the fake Yahoo: ours vs yf.download."""

from __future__ import annotations

import tempfile
import time
import warnings
from datetime import UTC, date, datetime

import yfinance as yf

from alerts.ports import ManualClock
from bot.fakes.yahoo_server import FakeYahoo
from bot.market.yahoo_poll import YahooPoller
from bot.market.yahoo_session import make_session

NOW = datetime(2025, 1, 27, 15, 0, tzinfo=UTC)


def main() -> None:
    # pandas 3 deprecation chatter from inside yfinance would bury the figures.
    warnings.filterwarnings("ignore")
    yf.set_tz_cache_location(tempfile.mkdtemp(prefix="yf-bench-"))
    symbols_all = [f"SYM{i:03d}" for i in range(500)]
    with FakeYahoo() as fake:
        for i, s in enumerate(symbols_all):
            fake.set_quote(s, price=100.0 + i % 7, previous_close=101.0, at=NOW)
            fake.set_closes(s, [(date(2025, 1, 23), 101.5), (date(2025, 1, 24), 101.0)])
        clock = ManualClock(NOW)
        poller = YahooPoller(clock=clock, base_url=fake.base_url)
        session = make_session(fake.base_url)
        print(
            f"{'symbols':>8} {'ours: data req':>15} {'all req':>8} {'ms':>7}"
            f"   {'yf.download: data req':>22} {'all req':>8} {'ms':>8}   {'ratio':>7}"
        )
        for n in (50, 500):
            symbols = symbols_all[:n]
            poller.fetch_quotes_sync(symbols)  # warm: cookie and crumb
            fake.reset_counts()
            t = time.perf_counter()
            result = poller.fetch_quotes_sync(symbols)
            ours_ms = (time.perf_counter() - t) * 1000
            assert len(result.quotes) == n, result.failed
            ours_data, ours_all = fake.counts["quote"], fake.counts.total()

            kwargs = dict(
                period="1d",
                interval="1m",
                prepost=True,
                progress=False,
                session=session,
                threads=True,
                auto_adjust=False,
            )
            yf.download(symbols, **kwargs)  # warm: timezone lookups are cached after this
            fake.reset_counts()
            t = time.perf_counter()
            frame = yf.download(symbols, **kwargs)
            base_ms = (time.perf_counter() - t) * 1000
            assert frame is not None
            assert not frame.empty
            base_data, base_all = fake.counts["chart"], fake.counts.total()
            print(
                f"{n:>8} {ours_data:>15} {ours_all:>8} {ours_ms:>7.0f}"
                f"   {base_data:>22} {base_all:>8} {base_ms:>8.0f}"
                f"   {ours_all / base_all:>6.3f}x"
            )
            per50 = ours_data / (n / 50)
            target = "meets" if per50 <= 1.0 else "MISSES"
            print(f"{'':>8} data requests per 50 symbols: {per50:.2f} ({target} target <= 1)")
        poller.close()
        print(
            "data req = v7 quote / v8 chart calls; all req adds yfinance's cookie and crumb"
            " fetches (through a rewritten base URL the Yahoo cookie cannot be cached)."
        )


if __name__ == "__main__":
    main()
