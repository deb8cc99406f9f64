"""Which watched symbols a story concerns: feed tickers, $CASHTAGS and company names."""

from __future__ import annotations

import re
from collections.abc import Collection, Mapping

# Legal-form and share-class words that headlines never write: "NVIDIA Corporation" -> NVIDIA.
_SUFFIXES = re.compile(
    r"[,\s]+(inc|incorporated|corp|corporation|co|company|ltd|limited|plc|llc|lp|nv|n\.v|sa|s\.a"
    r"|ag|se|spa|s\.p\.a|holdings?|group|class [a-c]|adr|ads|the)\.?$",
    re.IGNORECASE,
)


def _words_of(text: str) -> frozenset[str]:
    """A word list written as one block of text, so it reads like prose."""
    return frozenset(text.split())


# First words too common to stand for a company on their own ("American Airlines" is not
# every story about America).
_GENERIC_FIRST_WORDS = _words_of(
    """
    american united general first advanced international national global new china
    taiwan bank royal southern northern western eastern digital applied micro energy
    capital standard public super target
    """
)
_CASHTAG = re.compile(r"(?<![\w$])\$([A-Za-z][A-Za-z0-9.\-]{0,9})\b")


def short_name(name: str) -> str:
    """The name as headlines write it: legal suffixes and share classes removed."""
    text = name.strip()
    while True:
        cut = _SUFFIXES.sub("", text).strip(" ,")
        if cut == text or not cut:
            return text
        text = cut


def name_patterns(name: str) -> list[re.Pattern[str]]:
    """Whole-word patterns for a company name, and for its distinctive first word."""
    cleaned = short_name(name)
    patterns = [re.compile(rf"(?<!\w){re.escape(cleaned)}(?!\w)", re.IGNORECASE)]
    first = cleaned.split()[0] if cleaned.split() else ""
    if (
        " " in cleaned
        and len(first) >= 4
        and first.isalpha()
        and first.lower() not in _GENERIC_FIRST_WORDS
    ):
        # Case-sensitive: "Meta" the company, not "meta" the word.
        patterns.append(re.compile(rf"(?<!\w){re.escape(first)}(?!\w)"))
    return patterns


class SymbolTagger:
    """Tags stories with the watched symbols they mention; the names come from Yahoo quotes."""

    def __init__(self) -> None:
        self._patterns: dict[str, list[re.Pattern[str]]] = {}
        self._names: dict[str, str] = {}

    def set_names(self, names: Mapping[str, str]) -> None:
        for symbol, name in names.items():
            if name and self._names.get(symbol) != name:
                self._names[symbol] = name
                self._patterns[symbol] = name_patterns(name)

    def names(self) -> dict[str, str]:
        return dict(self._names)

    def known(self) -> frozenset[str]:
        return frozenset(self._names)

    def tag(
        self,
        text: str,
        *,
        watched: Collection[str],
        tickers: Collection[str] = (),
    ) -> tuple[str, ...]:
        """Watched symbols in the feed's tickers, as ``$CASHTAG``, or by company name."""
        wanted = {s.upper(): s for s in watched}
        found: list[str] = [wanted[t.upper()] for t in tickers if t.upper() in wanted]
        for match in _CASHTAG.finditer(text):
            symbol = wanted.get(match.group(1).upper())
            if symbol is not None:
                found.append(symbol)
        for symbol in watched:
            patterns = self._patterns.get(symbol, ())
            if any(p.search(text) for p in patterns):
                found.append(symbol)
        return tuple(dict.fromkeys(found))
