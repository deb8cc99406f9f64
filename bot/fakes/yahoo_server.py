"""A loopback fake of Yahoo Finance's REST API (cookie, crumb, v7 quote, v8 chart) for yfinance.

Paths arrive as ``/HOST/PATH?QUERY`` because the project's session rewrites
``https://HOST/PATH`` to ``{base_url}/HOST/PATH`` (see ``bot.market.yahoo_session``).
Responses are programmable (quotes, daily closes, faults) or come from recorded fixtures.
"""

from __future__ import annotations

import hashlib
import json
import threading
import time as time_module
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, unquote, urlsplit
from zoneinfo import ZoneInfo

from bot.fakes.news_feeds import Story, rss_document

CRUMB = "fakeCrumb123"


@dataclass
class Fault:
    """A programmed failure for requests whose path contains ``match``."""

    match: str
    kind: str  # "status", "garbage", "empty", "slow"
    status: int = 500
    remaining: int = 1  # -1: until cleared
    delay: float = 0.0  # "slow": seconds (wall time) before answering normally


def v7_quote(
    symbol: str,
    *,
    price: float | None,
    previous_close: float | None,
    market_state: str = "REGULAR",
    at: datetime | None = None,
    pre_price: float | None = None,
    pre_time: datetime | None = None,
    post_price: float | None = None,
    post_time: datetime | None = None,
    currency: str = "USD",
    exchange: str = "NMS",
    quote_type: str = "EQUITY",
    volume: float | None = None,
    tz_name: str = "America/New_York",
    name: str | None = None,
) -> dict[str, Any]:
    """A ``/v7/finance/quote`` result entry shaped like Yahoo's (only the fields we read)."""
    at = at or datetime.now(UTC)
    q: dict[str, Any] = {
        "symbol": symbol,
        "quoteType": quote_type,
        "currency": currency,
        "exchange": exchange,
        "fullExchangeName": exchange,
        "exchangeTimezoneName": tz_name,
        "marketState": market_state,
        "regularMarketTime": int(at.timestamp()),
        "triggerable": True,
    }
    if name is not None:
        q["shortName"] = q["longName"] = name
    if price is not None:
        q["regularMarketPrice"] = price
    if previous_close is not None:
        q["regularMarketPreviousClose"] = previous_close
        if price is not None and previous_close:
            q["regularMarketChange"] = price - previous_close
            q["regularMarketChangePercent"] = (price / previous_close - 1) * 100
    if volume is not None:
        q["regularMarketVolume"] = volume
    if pre_price is not None:
        q["preMarketPrice"] = pre_price
        q["preMarketTime"] = int((pre_time or at).timestamp())
        if previous_close:
            q["preMarketChangePercent"] = (pre_price / previous_close - 1) * 100
    if post_price is not None:
        q["postMarketPrice"] = post_price
        q["postMarketTime"] = int((post_time or at).timestamp())
    return q


def intraday_body(
    symbol: str,
    bars: Iterable[tuple[datetime, float, float]],
    *,
    interval: str = "5m",
    tz_name: str = "America/New_York",
) -> dict[str, Any]:
    """An intraday ``/v8/finance/chart`` body: one bar per (start, price, volume)."""
    rows = sorted(bars)
    body = chart_body(symbol, [(start.date(), price) for start, price, _ in rows], tz_name=tz_name)
    result = body["chart"]["result"][0]
    result["timestamp"] = [int(start.timestamp()) for start, _, _ in rows]
    # chart_body sorts (day, price) pairs, which reorders the prices of one day: set them here.
    prices = [price for _, price, _ in rows]
    quote = result["indicators"]["quote"][0]
    for key in ("open", "high", "low", "close"):
        quote[key] = list(prices)
    quote["volume"] = [volume for _, _, volume in rows]
    result["meta"]["dataGranularity"] = interval
    del result["indicators"]["adjclose"]
    return body


def chart_body(
    symbol: str,
    closes: Iterable[tuple[date, float]],
    *,
    tz_name: str = "America/New_York",
    currency: str = "USD",
    exchange: str = "NMS",
    instrument: str = "EQUITY",
    close_time: time = time(16, 0),
) -> dict[str, Any]:
    """A daily ``/v8/finance/chart`` body with one bar per (day, close)."""
    tz = ZoneInfo(tz_name)
    rows = sorted(closes)
    stamps = [int(datetime.combine(d, time(9, 30), tz).timestamp()) for d, _ in rows]
    values = [c for _, c in rows]
    last = rows[-1][0] if rows else date(2025, 1, 2)
    start = int(datetime.combine(last, time(4, 0), tz).timestamp())
    end = int(datetime.combine(last, close_time, tz).timestamp())
    offset = int((datetime.combine(last, time(12), tz).utcoffset() or timedelta()).total_seconds())
    period = {"timezone": "EST", "start": start, "end": end, "gmtoffset": offset}
    meta = {
        "currency": currency,
        "symbol": symbol,
        "exchangeName": exchange,
        "fullExchangeName": exchange,
        "instrumentType": instrument,
        "firstTradeDate": 0,
        "regularMarketTime": end,
        "gmtoffset": offset,
        "timezone": "EST",
        "exchangeTimezoneName": tz_name,
        "regularMarketPrice": values[-1] if values else None,
        "chartPreviousClose": values[0] if values else None,
        "priceHint": 2,
        "currentTradingPeriod": {"pre": period, "regular": period, "post": period},
        "dataGranularity": "1d",
        "range": "",
        "validRanges": ["1d", "5d", "1mo", "3mo", "6mo", "1y", "2y", "5y", "10y", "ytd", "max"],
    }
    return {
        "chart": {
            "result": [
                {
                    "meta": meta,
                    "timestamp": stamps,
                    "indicators": {
                        "quote": [
                            {
                                "open": values,
                                "high": values,
                                "low": values,
                                "close": values,
                                "volume": [1000] * len(values),
                            }
                        ],
                        "adjclose": [{"adjclose": values}],
                    },
                }
            ],
            "error": None,
        }
    }


_QUOTE_TIMES = ("regularMarketTime", "preMarketTime", "postMarketTime")


class FakeYahoo:
    """Serve Yahoo's REST shapes on 127.0.0.1; count every request by kind.

    ``fixtures_dir`` (e.g. ``../shared/fixtures/yahoo``): recorded responses are served for
    quote requests whose ``symbols`` match a recording, and for chart requests of a symbol
    registered with :meth:`serve_chart_fixture`.
    """

    def __init__(self, fixtures_dir: Path | None = None) -> None:
        self.quotes: dict[str, dict[str, Any]] = {}
        self.charts: dict[str, dict[str, Any]] = {}
        self.faults: list[Fault] = []
        self.stories: list[Story] = []
        # True: quotes are stamped with the time of each answer, as a live market's are
        # (a subprocess under the wall clock would otherwise see them go stale).
        self.live_times = False
        self.counts: Counter[str] = Counter()
        self.paths: list[str] = []
        self._lock = threading.Lock()
        self._quote_fixtures: dict[str, tuple[int, bytes]] = {}
        self._fixtures_dir = fixtures_dir
        if fixtures_dir is not None:
            self._index_fixtures(fixtures_dir)
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None

    # --- programming -------------------------------------------------------------------
    def set_quote(self, symbol: str, **fields: Any) -> None:
        with self._lock:
            self.quotes[symbol] = v7_quote(symbol, **fields)

    def set_raw_quote(self, entry: dict[str, Any]) -> None:
        with self._lock:
            self.quotes[entry["symbol"]] = entry

    def set_closes(self, symbol: str, closes: Iterable[tuple[date, float]], **kw: Any) -> None:
        with self._lock:
            self.charts[symbol] = chart_body(symbol, closes, **kw)

    def set_intraday(
        self, symbol: str, bars: Iterable[tuple[datetime, float, float]], interval: str = "5m"
    ) -> None:
        """Bars served for chart requests of ``symbol`` at ``interval`` (daily ones stay apart)."""
        with self._lock:
            self.charts[f"{symbol}@{interval}"] = intraday_body(symbol, bars, interval=interval)

    def fail(
        self,
        match: str,
        kind: str = "status",
        *,
        status: int = 500,
        times: int = 1,
        delay: float = 0.0,
    ) -> None:
        with self._lock:
            self.faults.append(Fault(match, kind, status, times, delay))

    def publish(self, story: Story) -> None:
        """A headline on Yahoo's feeds: per-symbol headline feeds carry it for its symbols,
        the general market feed (``/news/rssindex``) carries stories naming no symbol."""
        with self._lock:
            self.stories.append(story)

    def clear_faults(self) -> None:
        with self._lock:
            self.faults.clear()

    def reset_counts(self) -> None:
        with self._lock:
            self.counts.clear()
            self.paths.clear()

    def serve_chart_fixture(self, name: str, symbol: str | None = None) -> str:
        """Answer chart requests for the recording's symbol with fixture ``name``."""
        assert self._fixtures_dir is not None
        raw = json.loads((self._fixtures_dir / name).read_text())
        path = urlsplit(raw["request"]["url"]).path
        sym = symbol or path.rsplit("/", 1)[1]
        body = raw["response"].get("bodyJson")
        with self._lock:
            self.charts[sym] = body if body is not None else {"_raw": raw["response"]["body"]}
        return sym

    def _index_fixtures(self, folder: Path) -> None:
        for f in sorted(folder.glob("quote-*.json")):
            raw = json.loads(f.read_text())
            parts = urlsplit(raw["request"]["url"])
            q = parse_qs(parts.query)
            if "fields" in q:
                continue  # field-restricted recordings would shadow the full ones
            key = q.get("symbols", [""])[0]
            resp = raw["response"]
            body = resp.get("bodyJson")
            data = json.dumps(body).encode() if body is not None else resp["body"].encode()
            self._quote_fixtures[key] = (int(resp["status"]), data)

    @property
    def fixture_symbols(self) -> list[str]:
        return sorted(self._quote_fixtures)

    # --- lifecycle ---------------------------------------------------------------------
    def start(self, port: int = 0) -> str:
        fake = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"
            # Headers and body in one segment: otherwise Nagle + delayed ACK add ~40 ms.
            disable_nagle_algorithm = True
            wbufsize = 1 << 16

            def log_message(self, format: str, *args: Any) -> None:
                pass

            def do_GET(self) -> None:
                status, ctype, body, headers = fake._answer(
                    self.path, self.headers.get("If-None-Match")
                )
                self.send_response(status)
                self.send_header("Content-Type", ctype)
                self.send_header("Content-Length", str(len(body)))
                for k, v in headers.items():
                    self.send_header(k, v)
                self.end_headers()
                self.wfile.write(body)

            do_POST = do_GET

        self._server = ThreadingHTTPServer(("127.0.0.1", port), Handler)
        self._server.daemon_threads = True
        self._thread = threading.Thread(
            target=self._server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        )
        self._thread.start()
        return self.base_url

    @property
    def base_url(self) -> str:
        assert self._server is not None, "start() first"
        host, port = self._server.server_address[:2]
        return f"http://{host!s}:{port}"

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None

    def __enter__(self) -> FakeYahoo:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # --- answering ---------------------------------------------------------------------
    def _kind(self, path: str) -> str:
        if path.startswith("/fc.yahoo.com"):
            return "cookie"
        if "/v1/test/getcrumb" in path:
            return "crumb"
        if "/v7/finance/quote" in path:
            return "quote"
        if "/v8/finance/chart/" in path:
            return "chart"
        if "/rss/2.0/headline" in path or "/news/rssindex" in path:
            return "news"
        if "/v10/finance/quoteSummary/" in path:
            return "summary"
        if "/fundamentals-timeseries/" in path:
            return "timeseries"
        return "other"

    def _fault_for(self, path: str) -> Fault | None:
        for fault in self.faults:
            if fault.match in path and fault.remaining != 0:
                if fault.remaining > 0:
                    fault.remaining -= 1
                return fault
        return None

    def _answer(
        self, raw_path: str, if_none_match: str | None = None
    ) -> tuple[int, str, bytes, dict[str, str]]:
        parts = urlsplit(raw_path)
        path = parts.path
        query = parse_qs(parts.query)
        kind = self._kind(path)
        with self._lock:
            self.counts[kind] += 1
            self.paths.append(raw_path)
            fault = self._fault_for(path) if kind in ("quote", "chart", "crumb", "news") else None
        js = "application/json;charset=utf-8"
        if fault is not None and fault.kind == "slow":
            time_module.sleep(fault.delay)  # a stalled upstream; the client's timeout decides
            fault = None
        if fault is not None:
            if fault.kind == "garbage":
                return 200, js, b"<html>not json{", {}
            if fault.kind == "empty":
                if kind == "quote":
                    return 200, js, b'{"quoteResponse":{"result":[],"error":null}}', {}
                return 200, js, b'{"chart":{"result":null,"error":null}}', {}
            msg = b"Too Many Requests" if fault.status == 429 else b'{"error":"fake failure"}'
            return fault.status, "text/plain", msg, {}
        if kind == "cookie":
            # A real Yahoo answers 404 with the A3 cookie; yfinance only needs the round trip.
            return 404, "text/html", b"<html></html>", {"Set-Cookie": "A3=fake; Path=/"}
        if kind == "crumb":
            return 200, "text/plain", CRUMB.encode(), {}
        if kind == "quote":
            return self._answer_quote(query)
        if kind == "news":
            return self._answer_news(path, query, if_none_match)
        if kind == "summary":
            return self._answer_summary(unquote(path.rsplit("/", 1)[1]))
        if kind == "timeseries":
            # yfinance asks this after a failed chart lookup; Yahoo answers JSON, even if empty.
            return 200, js, b'{"timeseries":{"result":[],"error":null}}', {}
        if kind == "chart":
            sym = unquote(path.rsplit("/", 1)[1])
            interval = query.get("interval", ["1d"])[0]
            with self._lock:
                body = self.charts.get(f"{sym}@{interval}") or self.charts.get(sym)
                quoted = self.quotes.get(sym)
            if body is None and quoted is not None:
                # Yahoo charts every symbol it quotes; with no bars programmed, it is a symbol
                # that has not traded in the range (meta, no timestamps), not an unknown one.
                return 200, js, json.dumps(_chart_without_bars(quoted)).encode(), {}
            if body is None:
                # What Yahoo answers for a symbol it does not have (yfinance: "possibly
                # delisted; no timezone found"); its v7 quote answer simply leaves it out.
                err = {"code": "Not Found", "description": "No data found, symbol may be delisted"}
                return 404, js, json.dumps({"chart": {"result": None, "error": err}}).encode(), {}
            if "_raw" in body:
                return 200, js, str(body["_raw"]).encode(), {}
            refusal = _span_refusal(interval, query)
            if refusal is not None:
                return 422, js, json.dumps(refusal).encode(), {}
            return 200, js, json.dumps(_within_period(body, query)).encode(), {}
        return 404, "text/plain", b"not faked", {}

    def _answer_news(
        self, path: str, query: dict[str, list[str]], if_none_match: str | None
    ) -> tuple[int, str, bytes, dict[str, str]]:
        wanted = {s for s in query.get("s", [""])[0].split(",") if s}
        with self._lock:
            if "/news/rssindex" in path:
                stories = [s for s in self.stories if not s.symbols]
            else:
                stories = [s for s in self.stories if wanted & set(s.symbols)]
        stories.sort(key=lambda s: s.published, reverse=True)
        body = rss_document(stories, title="Yahoo! Finance: headlines")
        etag = '"' + hashlib.sha1(body).hexdigest()[:16] + '"'
        if if_none_match == etag:
            return 304, "application/rss+xml", b"", {"ETag": etag}
        return 200, "application/rss+xml;charset=utf-8", body, {"ETag": etag}

    def _answer_summary(self, symbol: str) -> tuple[int, str, bytes, dict[str, str]]:
        """``/v10/finance/quoteSummary/SYM`` (yfinance's ``info``): the quote type of a quoted
        symbol, and Yahoo's 404 "Quote not found" for any other."""
        js = "application/json;charset=utf-8"
        with self._lock:
            quote = self.quotes.get(symbol)
        if quote is None:
            err = {"code": "Not Found", "description": f"Quote not found for symbol: {symbol}"}
            missing = {"quoteSummary": {"result": None, "error": err}}
            return 404, js, json.dumps(missing).encode(), {}
        quote_type: dict[str, Any] = {
            "symbol": symbol,
            "quoteType": quote.get("quoteType", "EQUITY"),
            "exchange": quote.get("exchange"),
            "exchangeTimezoneName": quote.get("exchangeTimezoneName", "America/New_York"),
        }
        for key in ("shortName", "longName"):
            if key in quote:
                quote_type[key] = quote[key]
        found = {"quoteSummary": {"result": [{"quoteType": quote_type}], "error": None}}
        return 200, js, json.dumps(found).encode(), {}

    def _answer_quote(self, query: dict[str, list[str]]) -> tuple[int, str, bytes, dict[str, str]]:
        js = "application/json;charset=utf-8"
        wanted = query.get("symbols", [""])[0]
        with self._lock:
            fixture = self._quote_fixtures.get(wanted)
            symbols = [s for s in wanted.split(",") if s]
            result = [self.quotes[s] for s in symbols if s in self.quotes]
            if self.live_times:
                stamp = int(time_module.time())
                result = [{**q, **{k: stamp for k in _QUOTE_TIMES if k in q}} for q in result]
        if fixture is not None and not result:
            status, data = fixture
            return status, js, data, {}
        body = {"quoteResponse": {"result": result, "error": None}}
        return 200, js, json.dumps(body).encode(), {}


def _chart_without_bars(quote: dict[str, Any]) -> dict[str, Any]:
    """The chart Yahoo serves for a quoted symbol over a range without trades: meta only."""
    meta = {
        "symbol": quote["symbol"],
        "currency": quote.get("currency"),
        "exchangeName": quote.get("exchange"),
        "fullExchangeName": quote.get("fullExchangeName"),
        "instrumentType": quote.get("quoteType", "EQUITY"),
        "exchangeTimezoneName": quote.get("exchangeTimezoneName", "America/New_York"),
        "regularMarketPrice": quote.get("regularMarketPrice"),
        "regularMarketTime": quote.get("regularMarketTime"),
        "dataGranularity": "1d",
        "validRanges": ["1d", "5d", "1mo", "3mo", "6mo", "1y", "2y", "5y", "10y", "ytd", "max"],
    }
    if "longName" in quote:
        meta["longName"] = quote["longName"]
    result = {"meta": meta, "indicators": {"quote": [{}], "adjclose": [{}]}}
    return {"chart": {"result": [result], "error": None}}


# How much one chart request may span, per interval, as Yahoo enforces it.
MAX_REQUEST_SPAN = {"1m": timedelta(days=8), "5m": timedelta(days=60), "15m": timedelta(days=60)}


def _span_refusal(interval: str, query: dict[str, list[str]]) -> dict[str, Any] | None:
    """Yahoo's 422 for a request spanning more than it serves at once (8 days of 1m bars)."""
    limit = MAX_REQUEST_SPAN.get(interval)
    if limit is None or "period1" not in query or "period2" not in query:
        return None
    start, end = int(query["period1"][0]), int(query["period2"][0])
    if end - start <= limit.total_seconds():
        return None
    description = (
        f"{interval} data not available for startTime={start} and endTime={end}. "
        f"Only {limit.days} days worth of {interval} granularity data are allowed to be "
        "fetched per request."
    )
    return {
        "chart": {
            "result": None,
            "error": {"code": "Unprocessable Entity", "description": description},
        }
    }


def _within_period(body: dict[str, Any], query: dict[str, list[str]]) -> dict[str, Any]:
    """Only the bars in ``[period1, period2)``, as Yahoo answers a ranged request."""
    if "period1" not in query or "period2" not in query:
        return body
    result = body["chart"]["result"][0]
    stamps = result.get("timestamp")
    if not stamps:
        return body
    start, end = int(query["period1"][0]), int(query["period2"][0])
    keep = [i for i, stamp in enumerate(stamps) if start <= stamp < end]
    quote = result["indicators"]["quote"][0]
    trimmed_quote = {key: [values[i] for i in keep] for key, values in quote.items()}
    indicators = {**result["indicators"], "quote": [trimmed_quote]}
    if "adjclose" in indicators:
        adj = indicators["adjclose"][0]["adjclose"]
        indicators["adjclose"] = [{"adjclose": [adj[i] for i in keep]}]
    trimmed = {**result, "timestamp": [stamps[i] for i in keep], "indicators": indicators}
    return {"chart": {"result": [trimmed], "error": None}}


def main(argv: list[str] | None = None) -> None:
    """Run the fake standalone, e.g. for ``MARKETBOT_YAHOO__BASE_URL`` in a demo or by hand."""
    import argparse

    parser = argparse.ArgumentParser(description="Loopback fake of Yahoo Finance's REST API.")
    parser.add_argument("--port", type=int, default=8765)
    parser.add_argument("--fixtures", type=Path, help="folder of recorded Yahoo responses")
    parser.add_argument(
        "--quote",
        action="append",
        default=[],
        metavar="SYM=PRICE:PREV[:STATE]",
        help="a quote to serve, e.g. NVDA=124.0:142.62:PRE (repeatable)",
    )
    args = parser.parse_args(argv)
    fake = FakeYahoo(args.fixtures)
    for spec in args.quote:
        sym, _, rest = spec.partition("=")
        parts = rest.split(":")
        state = parts[2] if len(parts) > 2 else "REGULAR"
        price, prev = float(parts[0]), float(parts[1])
        if state == "PRE":
            fake.set_quote(
                sym, price=prev, previous_close=prev, market_state=state, pre_price=price
            )
        else:
            fake.set_quote(sym, price=price, previous_close=prev, market_state=state)
    fake.start(port=args.port)
    print(f"fake Yahoo on {fake.base_url} (Ctrl-C stops)", flush=True)
    try:
        threading.Event().wait()
    except KeyboardInterrupt:
        pass
    finally:
        fake.stop()


if __name__ == "__main__":
    main()
