"""HTTP sessions for yfinance that send every Yahoo REST call to a configurable base URL."""

from __future__ import annotations

from typing import Any
from urllib.parse import urlsplit

import curl_cffi.requests
import requests


def rewrite_url(url: str, base_url: str) -> str:
    """``https://HOST/PATH?Q`` -> ``{base_url}/HOST/PATH?Q``; other URLs pass unchanged."""
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        return url
    base = base_url.rstrip("/")
    if url.startswith(base + "/"):
        return url  # already rewritten (yfinance re-sends redirects and retries)
    rest = url.split("://", 1)[1]
    return f"{base}/{rest}"


class RewritingCurlSession(curl_cffi.requests.Session[curl_cffi.requests.Response]):
    """curl_cffi session (what yfinance uses for real Yahoo) with the base-URL rewrite.

    yfinance hard-codes its hosts and only accepts a real Session (or subclass), so the
    mirror/fake setting is implemented where every request passes: ``request``.
    """

    def __init__(self, base_url: str, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        # Not ``base_url``: curl_cffi's Session already uses that name for relative URLs.
        self.rewrite_base = base_url

    def request(self, method: Any, url: str, *args: Any, **kwargs: Any) -> Any:
        return super().request(method, rewrite_url(url, self.rewrite_base), *args, **kwargs)


class RewritingRequestsSession(requests.Session):
    """The same rewrite on a plain ``requests`` session (lighter; fine for loopback fakes)."""

    def __init__(self, base_url: str) -> None:
        super().__init__()
        self.rewrite_base = base_url

    def request(self, method: Any, url: Any, *args: Any, **kwargs: Any) -> requests.Response:
        text = url.decode() if isinstance(url, bytes) else str(url)
        return super().request(method, rewrite_url(text, self.rewrite_base), *args, **kwargs)


def make_session(
    base_url: str | None,
) -> curl_cffi.requests.Session[curl_cffi.requests.Response] | requests.Session:
    """The session yfinance should use: real Chrome-like curl_cffi for Yahoo, or rewritten."""
    if base_url is None:
        return curl_cffi.requests.Session(impersonate="chrome")
    parsed = urlsplit(base_url)
    if parsed.scheme not in ("http", "https") or not parsed.netloc:
        raise ValueError(f"yahoo base URL must be http(s)://host[:port][/path], got {base_url!r}")
    return RewritingCurlSession(base_url, impersonate="chrome")
