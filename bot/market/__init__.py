"""Market data adapters: Yahoo stream and batched polling, exchange calendars, replay.

- ``sessions``: which session (pre/regular/post/closed) a symbol is in, from exchange_calendars.
- ``yahoo_session``: the yfinance HTTP session, optionally rewritten to a mirror or fake.
- ``yahoo_poll``: batched ``/v7/finance/quote`` (<= 1 request per 50 symbols) and reference closes.
- ``yahoo_stream``: the supervised live websocket.
- ``source``: ``YahooMarketData``, the stream + polling + idle combination the bot runs on.
- ``timer``: real or virtual waiting, so the loops run on an injected clock.
"""
