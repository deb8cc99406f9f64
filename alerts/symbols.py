"""Normalises what people type into Yahoo Finance's symbol forms, or says what is wrong."""

from __future__ import annotations

import re

MAX_SYMBOL_LENGTH = 20

# Yahoo's exchange suffixes (ASML.AS, VOD.L, SAP.DE, 7203.T, ...). A one-letter class suffix such
# as BRK.B is not among them: Yahoo writes share classes with a dash (BRK-B).
EXCHANGE_SUFFIXES = frozenset(
    [
        "AS",
        "AT",
        "AX",
        "BA",
        "BC",
        "BD",
        "BE",
        "BK",
        "BO",
        "BR",
        "CA",
        "CN",
        "CO",
        "CR",
        "DE",
        "DU",
        "F",
        "HA",
        "HE",
        "HK",
        "HM",
        "IC",
        "IL",
        "IR",
        "IS",
        "JK",
        "JO",
        "KL",
        "KQ",
        "KS",
        "L",
        "LS",
        "MC",
        "ME",
        "MI",
        "MU",
        "MX",
        "NE",
        "NS",
        "NZ",
        "OL",
        "PA",
        "PR",
        "QA",
        "RG",
        "SA",
        "SG",
        "SI",
        "SN",
        "SR",
        "SS",
        "ST",
        "SW",
        "SZ",
        "T",
        "TA",
        "TL",
        "TO",
        "TW",
        "TWO",
        "V",
        "VI",
        "VS",
        "WA",
        "XC",
    ]
)

_EQUITY = r"[A-Z0-9]{1,10}(?:-[A-Z0-9]{1,5})?"
_PATTERNS = (
    re.compile(r"^\^[A-Z0-9]{1,10}$"),  # indices: ^VIX, ^GSPC
    re.compile(rf"^{_EQUITY}=[FX]$"),  # futures NQ=F, FX EURUSD=X
    re.compile(rf"^{_EQUITY}(?:\.(?P<suffix>[A-Z]{{1,3}}))?$"),  # NVDA, BRK-B, BTC-USD, ASML.AS
)

EXAMPLES = "NVDA, ASML.AS, NQ=F, ^VIX, BRK-B"


class SymbolError(ValueError):
    """The text is not a symbol Yahoo would know; the message says why and shows the right form."""


def normalize_symbol(text: str) -> str:
    """``nvda`` -> ``NVDA``; ``$nvda`` -> ``NVDA``; raises SymbolError with an example otherwise."""
    raw = text.strip()
    if not raw:
        raise SymbolError(f"Give a symbol, for example {EXAMPLES}.")
    if not raw.isprintable() or not raw.isascii():
        raise SymbolError(f"That is not a symbol. Symbols look like {EXAMPLES}.")
    if len(raw) > MAX_SYMBOL_LENGTH:
        raise SymbolError(
            f"That symbol is too long ({len(raw)} characters, at most {MAX_SYMBOL_LENGTH}). "
            f"Symbols look like {EXAMPLES}."
        )
    symbol = raw.upper().removeprefix("$")
    for pattern in _PATTERNS:
        match = pattern.match(symbol)
        if match is None:
            continue
        suffix = match.groupdict().get("suffix")
        if suffix is not None and suffix not in EXCHANGE_SUFFIXES:
            base = symbol.rsplit(".", 1)[0]
            if len(suffix) == 1:
                raise SymbolError(
                    f"`{raw}`: Yahoo writes share classes with a dash: try `{base}-{suffix}`."
                )
            raise SymbolError(
                f"`{raw}`: `.{suffix}` is not an exchange suffix Yahoo uses "
                f"(for example ASML.AS for Amsterdam, VOD.L for London)."
            )
        return symbol
    display = raw if len(raw) <= MAX_SYMBOL_LENGTH else raw[:MAX_SYMBOL_LENGTH] + "…"
    raise SymbolError(f"`{display}` is not a symbol. Symbols look like {EXAMPLES}.")


def is_futures(symbol: str) -> bool:
    return symbol.endswith("=F")
