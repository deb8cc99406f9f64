"""Which headlines explain a price move: ranked by relevance to the move, never by recency alone.

A story qualifies when it speaks of the move (a word in the move's direction), of the theme
shared by the names that moved, or of several of them at once; listicles and questions
("3 reasons to buy NVDA?") never qualify, so when nothing fits the alert says so instead of
showing filler. Tiers come in this order: stories about the moving symbols, stories about
their common theme, then market-wide stories (only for a broad move).
"""

from __future__ import annotations

import math
import re
from collections import Counter
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum

from alerts.models import NewsItem

MAX_CATALYSTS = 3
# Index futures and indices: a story tagged only with these is market-wide.
MARKET_SYMBOLS = frozenset({"NQ=F", "ES=F", "YM=F", "RTY=F", "^GSPC", "^IXIC", "^DJI", "^NDX"})
# How much more often the theme appears in the movers' headlines than in the rest.
THEME_MIN_RATIO = 2.0
NO_CATALYST_NOTE = "No headline since the last close explains this move."


def _words_of(text: str) -> frozenset[str]:
    """A word list written as one block of text, so it reads like prose."""
    return frozenset(text.split())


_DOWN = _words_of(
    """
    fall falls fell falling drop drops dropped dropping slump slumps slumped plunge
    plunges plunged plummet plummets plummeted tumble tumbles tumbled sink sinks sank
    slide slides slid selloff sell-off rout routs crash crashes crashed tank tanks
    tanked slip slips slipped shed sheds wipe wipes wiped losses loses lose lost slashes
    slash cut cuts downgrade downgraded downgrades miss misses missed warns warning
    probe lawsuit recall halts halted fears fear threat threatens bans ban tariff
    tariffs weak weaker lower retreat retreats dive dives dived diving sag sags skid
    skids crater craters cratered sour sours soured hammered battered reel reels reeling
    rattle rattles rattled spook spooks spooked jolt jolts shake shakes shaken meltdown
    collapse collapses collapsed dump dumps dumped halve halves halved bloodbath slammed
    pummeled sinking tumbling sliding slipping losing worst
    """
)
_UP = _words_of(
    """
    rise rises rose rising jump jumps jumped surge surges surged soar soars soared rally
    rallies rallied gain gains gained climb climbs climbed spike spikes spiked record
    beat beats upgrade upgraded upgrades raises raised boost boosts boosted higher
    strong stronger wins approval approved
    """
)
_FILLER = re.compile(
    r"\?\s*$|\b(\d+|two|three|four|five|ten)\s+(reasons|things|stocks|ways)\b|\bshould you\b"
    r"|\bis it time\b|\bprice prediction\b|\bmillionaire\b|\bbest\b.*\bstocks?\b"
    r"|\bstocks? to (buy|watch)\b|\b(buy|sell) (now|today)\b|\bmotley fool\b",
    re.IGNORECASE,
)
_WORD = re.compile(r"[A-Za-z][A-Za-z0-9'\-]*[A-Za-z0-9]|[A-Za-z]")
# Words every market headline uses: never a theme.
_STOPWORDS = _words_of(
    """
    the a an and or of to in on for with as at by from after before amid over under into
    its it is are was were be been has have had will would could may might can not no
    new says said say stock stocks share shares market markets premarket futures trading
    trade traders investors investor wall street tech index nasdaq dow s&p week today
    day monday tuesday wednesday thursday friday saturday sunday morning session open
    close report reports company companies inc corp year quarter why what how this that
    than more most amid up down out off big top us u.s. world global news update live
    """
)


class Basis(StrEnum):
    SYMBOL = "symbol"  # names a symbol that moved
    THEME = "theme"  # speaks of the theme the moving names share
    MARKET = "market"  # market-wide, shown with a broad move only


@dataclass(frozen=True, slots=True)
class Catalyst:
    item: NewsItem
    basis: Basis
    score: float
    when: str  # "2h before", "3 min after": relative to the move's start


@dataclass(frozen=True, slots=True)
class Attribution:
    catalysts: tuple[Catalyst, ...] = ()
    theme: str | None = None

    @property
    def note(self) -> str | None:
        """What the alert says when no headline fits (rather than showing filler)."""
        return None if self.catalysts else NO_CATALYST_NOTE


def _words(title: str) -> list[str]:
    # "DeepSeek's" is DeepSeek: the possessive would split one theme in two.
    return [re.sub(r"['’]s$", "", w) for w in _WORD.findall(title.replace("’", "'"))]


def is_filler(title: str) -> bool:
    return _FILLER.search(title) is not None


def direction_of(moves: Mapping[str, float]) -> int:
    """-1 for a move down, +1 up, 0 when the names split evenly."""
    total = sum(1 if v > 0 else -1 if v < 0 else 0 for v in moves.values())
    return (total > 0) - (total < 0)


def _speaks_of_move(title: str, direction: int) -> int:
    """+1 when the title has a word in the move's direction, -1 only the opposite, else 0."""
    lowered = {w.lower() for w in _words(title)}
    down, up = bool(lowered & _DOWN), bool(lowered & _UP)
    if direction < 0:
        return 1 if down else -1 if up else 0
    if direction > 0:
        return 1 if up else -1 if down else 0
    return 1 if down or up else 0


def relative_time(published: datetime, start: datetime) -> str:
    """How long before or after the move's start a story appeared, in a chat-sized phrase."""
    seconds = (published - start).total_seconds()
    side = "before" if seconds < 0 else "after"
    span = abs(seconds)
    if span < 60:
        return "at the start" if span < 30 else f"1 min {side}"
    minutes = round(span / 60)
    if minutes < 60:
        return f"{minutes} min {side}"
    hours = round(span / 3600)
    if hours < 48:
        return f"{hours}h {side}"
    return f"{round(span / 86400)}d {side}"


def find_theme(
    moves: Mapping[str, float],
    news: Sequence[NewsItem],
    *,
    exclude_terms: Collection[str] = (),
    background_news: Sequence[NewsItem] = (),
) -> str | None:
    """The term that dominates the moving names' headlines against the background, if any.

    A term must appear in headlines of at least two of the moving names (and at least 40% of
    those that have headlines), and be at least ``THEME_MIN_RATIO`` times as frequent there
    as in the other stories (of the period, plus ``background_news``: older headlines, the
    ordinary flow). On unrelated noise no term qualifies: no theme.
    """
    moving = set(moves)
    if len(moving) < 2:
        return None
    excluded = {t.lower() for t in exclude_terms} | {s.lower() for s in moving}
    about: list[NewsItem] = []  # stories naming a mover
    general: list[NewsItem] = []  # stories naming no company: they may carry the theme too
    background: list[NewsItem] = list(background_news)  # stories about other companies
    for item in news:
        if is_filler(item.title):
            continue  # listicles repeat names, not themes
        if moving & set(item.symbols):
            about.append(item)
        elif set(item.symbols) <= MARKET_SYMBOLS:
            general.append(item)
        else:
            background.append(item)
    if not about:
        return None
    covered: dict[str, set[str]] = {}
    in_about: Counter[str] = Counter()
    spelling: dict[str, Counter[str]] = {}
    for item in about:
        for key, word in _terms(item.title, excluded).items():
            in_about[key] += 1
            spelling.setdefault(key, Counter())[word] += 1
            covered.setdefault(key, set()).update(moving & set(item.symbols))
    in_general = Counter(key for item in general for key in _terms(item.title, excluded))
    with_news = {s for item in about for s in moving & set(item.symbols)}
    need = max(2, math.ceil(0.4 * len(with_news)))
    background_terms = Counter(
        key for item in background for key in {w.lower() for w in _words(item.title)}
    )
    best: tuple[int, int, float, str] | None = None
    for key, symbols in covered.items():
        if len(symbols) < need:
            continue
        share = in_about[key] / len(about)
        background_share = (background_terms[key] + 0.5) / (len(background) + 1)
        ratio = share / background_share
        if ratio < THEME_MIN_RATIO:
            continue
        # Most movers first; then the term the day's stories repeat most (DeepSeek over
        # "startup" when both name the same story).
        candidate = (len(symbols), in_about[key] + in_general[key], ratio, key)
        if best is None or candidate > best:
            best = candidate
    if best is None:
        return None
    return spelling[best[3]].most_common(1)[0][0]


def _terms(title: str, excluded: Collection[str]) -> dict[str, str]:
    """Candidate theme words of a title (lowercased -> as written)."""
    out: dict[str, str] = {}
    for word in _words(title):
        key = word.lower()
        if len(key) < 3 or key in _STOPWORDS or key in excluded or key in _DOWN or key in _UP:
            continue
        out.setdefault(key, word)
    return out


def _mentions(title: str, term: str | None) -> bool:
    if term is None:
        return False
    return re.search(rf"(?<!\w){re.escape(term)}(?!\w)", title, re.IGNORECASE) is not None


def attribute(
    moves: Mapping[str, float],
    news: Sequence[NewsItem],
    *,
    since: datetime,
    move_start: datetime,
    now: datetime,
    broad: bool,
    exclude_terms: Collection[str] = (),
    market_symbols: Collection[str] = MARKET_SYMBOLS,
    limit: int = MAX_CATALYSTS,
    theme_moves: Mapping[str, float] | None = None,
) -> Attribution:
    """Up to ``limit`` headlines published in [since, now] that explain ``moves``.

    ``moves`` maps each moving symbol to its change in percent; ``since`` is the previous
    regular close (so weekend and overnight stories count); ``broad`` says whether the move
    is market-wide (a basket, most of the watch list, or the futures), which alone lets
    stories about the whole market attach. ``theme_moves`` are the other names moving the
    same way right now (from earlier groups too), so a name that falls alone a minute after
    the others still gets the day's theme.
    """
    window = [i for i in news if since <= i.published <= now]
    moving = set(moves)
    direction = direction_of(moves)
    older = [i for i in news if i.published < since and not moving & set(i.symbols)]
    movers = {**(theme_moves or {}), **moves}
    movers = {s: v for s, v in movers.items() if direction == 0 or v * direction > 0}
    theme = find_theme(movers, window, exclude_terms=exclude_terms, background_news=older)
    market = set(market_symbols)
    scored: list[Catalyst] = []
    for item in window:
        if is_filler(item.title):
            continue
        named = moving & set(item.symbols)
        themed = _mentions(item.title, theme)
        if named:
            basis = Basis.SYMBOL
        elif themed:
            basis = Basis.THEME
        elif broad and set(item.symbols) <= market:
            basis = Basis.MARKET
        else:
            continue
        speaks = _speaks_of_move(item.title, direction)
        score = 2.0 * speaks + (2.0 if themed else 0.0) + 0.5 * min(len(named) - 1, 3)
        if speaks <= 0 and not themed and len(named) < 2:
            continue  # neither the move, nor its theme, nor several movers: not a catalyst
        if score <= 0:
            continue
        # Among equals, the story that appeared closest before the move explains it best.
        lead = (move_start - item.published).total_seconds() / 3600.0
        score += 0.5 / (1.0 + abs(lead)) if lead >= -0.5 else 0.0
        scored.append(Catalyst(item, basis, score, relative_time(item.published, move_start)))
    order = {Basis.SYMBOL: 0, Basis.THEME: 1, Basis.MARKET: 2}
    scored.sort(key=lambda c: (order[c.basis], -c.score, abs(c.item.published - move_start)))
    chosen: list[Catalyst] = []
    # The best story of each tier first, so three stories about one name cannot crowd out the
    # theme or the market story; then the remaining places by relevance.
    for tier in (Basis.SYMBOL, Basis.THEME, Basis.MARKET):
        best = next((c for c in scored if c.basis is tier), None)
        if best is not None and len(chosen) < limit:
            chosen.append(best)
    for c in sorted(scored, key=lambda c: -c.score):
        if len(chosen) >= limit:
            break
        if c not in chosen:
            chosen.append(c)
    chosen.sort(key=lambda c: (order[c.basis], -c.score))
    return Attribution(catalysts=tuple(_distinct(chosen)), theme=theme)


def _distinct(catalysts: Sequence[Catalyst]) -> list[Catalyst]:
    seen: set[str] = set()
    out = []
    for c in catalysts:
        if c.item.key not in seen:
            seen.add(c.item.key)
            out.append(c)
    return out


def is_broad_move(
    moves: Mapping[str, float],
    *,
    watched: Collection[str],
    basket: bool,
    futures_moves: Mapping[str, float | None],
    futures_threshold_pct: float = 1.0,
) -> bool:
    """A basket moved, most of the watch list moved, or the index futures moved."""
    if basket:
        return True
    if any(s in MARKET_SYMBOLS for s in moves):
        return True
    names = [s for s in watched if s not in MARKET_SYMBOLS]
    if len(moves) >= 3 and names and len(moves) * 2 >= len(names):
        return True
    return any(v is not None and abs(v) >= futures_threshold_pct for v in futures_moves.values())


__all__ = [
    "MARKET_SYMBOLS",
    "NO_CATALYST_NOTE",
    "Attribution",
    "Basis",
    "Catalyst",
    "attribute",
    "direction_of",
    "find_theme",
    "is_broad_move",
    "is_filler",
    "relative_time",
]
