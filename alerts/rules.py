"""The rule language: parse what a user typed into a typed rule with one canonical spelling."""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import timedelta
from enum import StrEnum

from alerts.durations import UNIT_SECONDS, format_duration
from alerts.symbols import SymbolError, normalize_symbol

DEFAULT_RULE_TEXT = "drop 10%"

MAX_RULE_LENGTH = 200
MAX_DURATION = timedelta(days=1)


class RuleSyntaxError(ValueError):
    """A rule could not be understood; the message names the word and shows a correct example."""

    def __init__(self, text: str, word: str | None, example: str, why: str | None = None) -> None:
        self.text = text
        self.word = word
        self.example = example
        if why is not None and (word is None or f'"{word}"' in why):
            lead = why
        elif why is not None:
            lead = f'"{word}" does not fit: {why}'
        elif word is None:
            lead = f'The rule "{text}" is incomplete'
        else:
            lead = f'I did not understand "{word}" in "{text}"'
        super().__init__(f'{lead}. Try for example: "{example}".')


class Direction(StrEnum):
    DROP = "drop"
    RISE = "rise"
    MOVE = "move"


class Basis(StrEnum):
    CLOSE = "close"  # the previous regular-session close (the default)
    OPEN = "open"  # today's regular-session open


def _num(x: float) -> str:
    # Six decimals at most (parse rounds to that), trailing zeros stripped: "10", "2.5".
    return f"{x:.6f}".rstrip("0").rstrip(".")


def _suffix(confirm: timedelta | None) -> str:
    return f" for {format_duration(confirm)}" if confirm else ""


@dataclass(frozen=True, slots=True)
class ChangeRule:
    """``drop|rise|move X%`` against the previous close, today's open, or a rolling window."""

    direction: Direction
    pct: float
    basis: Basis = Basis.CLOSE
    window: timedelta | None = None  # "in 15m": against the extreme of the last 15 minutes
    confirm: timedelta | None = None  # "for 2m": must hold that long before firing
    # "vs NQ=F": the move of its own, the symbol's change minus the benchmark's (in points).
    benchmark: str | None = None

    @property
    def canonical(self) -> str:
        text = f"{self.direction.value} {_num(self.pct)}%"
        if self.window is not None:
            text += f" in {format_duration(self.window)}"
        elif self.basis is Basis.OPEN:
            text += " from open"
        if self.benchmark is not None:
            text += f" vs {self.benchmark}"
        return text + _suffix(self.confirm)


@dataclass(frozen=True, slots=True)
class LevelRule:
    """``above P`` / ``below P``: the price crosses a level."""

    above: bool
    price: float
    confirm: timedelta | None = None

    @property
    def canonical(self) -> str:
        return f"{'above' if self.above else 'below'} {_num(self.price)}" + _suffix(self.confirm)


@dataclass(frozen=True, slots=True)
class GapRule:
    """``gap X%``: the regular-session open against the previous close, once per day."""

    direction: Direction
    pct: float

    @property
    def canonical(self) -> str:
        way = {Direction.MOVE: "", Direction.DROP: "down ", Direction.RISE: "up "}[self.direction]
        return f"gap {way}{_num(self.pct)}%"


@dataclass(frozen=True, slots=True)
class VolumeRule:
    """``volume Nx``: today's volume so far against the average for this time of day."""

    multiple: float

    @property
    def canonical(self) -> str:
        return f"volume {_num(self.multiple)}x"


@dataclass(frozen=True, slots=True)
class BreadthRule:
    """``breadth K of N drop X%``: at least K members of a basket moved X% (baskets only)."""

    count: int
    direction: Direction
    pct: float
    of: int | None = None  # informative: the basket size the user had in mind
    confirm: timedelta | None = None

    @property
    def canonical(self) -> str:
        of = f" of {self.of}" if self.of is not None else ""
        return f"breadth {self.count}{of} {self.direction.value} {_num(self.pct)}%" + _suffix(
            self.confirm
        )


@dataclass(frozen=True, slots=True)
class NewsRule:
    """``news KEYWORD``: a headline containing the keyword (case-insensitive, whole words)."""

    keyword: str

    @property
    def canonical(self) -> str:
        return f"news {self.keyword}"


Rule = ChangeRule | LevelRule | GapRule | VolumeRule | BreadthRule | NewsRule

_DIRECTION_WORDS = {
    "drop": Direction.DROP,
    "drops": Direction.DROP,
    "down": Direction.DROP,
    "fall": Direction.DROP,
    "falls": Direction.DROP,
    "dip": Direction.DROP,
    "rise": Direction.RISE,
    "rises": Direction.RISE,
    "up": Direction.RISE,
    "gain": Direction.RISE,
    "gains": Direction.RISE,
    "jump": Direction.RISE,
    "move": Direction.MOVE,
    "moves": Direction.MOVE,
    "change": Direction.MOVE,
    "swing": Direction.MOVE,
}
_ABOVE_WORDS = {"above", "over", ">"}
_BELOW_WORDS = {"below", "under", "<"}
_PCT_WORDS = {"%", "pct", "percent"}
_TOKEN = re.compile(r"\s*(?:(\d+(?:\.\d*)?|\.\d+)|([a-z]+)|(\S))")
_NEWS_KEYWORD = re.compile(r"[\w$.&' -]{1,60}")

EXAMPLE_CHANGE = "drop 10%"
EXAMPLE_ANY = "drop 10%"
EXAMPLES = (
    "drop 10%",
    "rise 5% from open",
    "move 3% in 15m",
    "above 150",
    "below 120.5",
    "gap 4%",
    "volume 3x",
    "breadth 5 of 8 drop 5%",
    "news deepseek",
    "drop 5% for 2m",
    "drop 5% vs NQ=F",
)


class _Tokens:
    def __init__(self, text: str) -> None:
        self.text = text
        self.items: list[str] = []
        pos = 0
        lowered = text.lower()
        while pos < len(lowered):
            m = _TOKEN.match(lowered, pos)
            if m is None:  # only trailing whitespace is left
                break
            self.items.append(m.group(m.lastindex or 0))
            pos = m.end()
        self.i = 0

    def peek(self) -> str | None:
        return self.items[self.i] if self.i < len(self.items) else None

    def take(self) -> str | None:
        tok = self.peek()
        if tok is not None:
            self.i += 1
        return tok

    def fail(self, example: str, word: str | None = None) -> RuleSyntaxError:
        return RuleSyntaxError(self.text, word if word is not None else self.peek(), example)

    def number(self, example: str) -> float:
        tok = self.take()
        if tok is None or not (tok[0].isdigit() or tok[0] == "."):
            raise RuleSyntaxError(self.text, tok, example)
        value = round(float(tok), 6)
        if value <= 0:
            raise RuleSyntaxError(self.text, tok, example, why=f'"{tok}" must be more than 0')
        return value

    def integer(self, example: str) -> int:
        tok = self.peek()
        value = self.number(example)
        if not value.is_integer():
            raise RuleSyntaxError(self.text, tok, example)
        return int(value)

    def percent_sign(self, example: str, *, required: bool = False) -> None:
        if self.peek() in _PCT_WORDS:
            self.take()
        elif required:
            raise self.fail(example)

    def duration(self, example: str) -> timedelta:
        seconds = 0.0
        parts = 0
        while True:
            tok = self.peek()
            if tok is None or not (tok[0].isdigit() or tok[0] == "."):
                break
            amount = float(tok)
            self.take()
            unit = self.take()
            if unit is None or unit not in UNIT_SECONDS:
                raise RuleSyntaxError(self.text, unit, example)
            seconds += amount * UNIT_SECONDS[unit]
            parts += 1
        if parts == 0:
            raise self.fail(example)
        # Compared as seconds first: a huge number would overflow timedelta itself.
        if not 0 < seconds <= MAX_DURATION.total_seconds() or round(seconds) == 0:
            raise RuleSyntaxError(
                self.text, None, example, why="A duration must be between 1s and 24h"
            )
        return timedelta(seconds=round(seconds))


def _check_pct(tokens: _Tokens, direction: Direction, pct: float, example: str) -> None:
    if pct > 1000 or (direction is Direction.DROP and pct >= 100):
        raise RuleSyntaxError(
            tokens.text, None, example, why=f"{_num(pct)}% is not a move a price can make"
        )


def _modifiers(tokens: _Tokens, rule: ChangeRule) -> ChangeRule:
    basis, window, confirm = rule.basis, rule.window, rule.confirm
    ex = f"{rule.direction.value} {_num(rule.pct)}%"
    while (tok := tokens.peek()) is not None:
        if tok == "from" and basis is Basis.CLOSE and window is None:
            tokens.take()
            what = tokens.take()
            if what == "open":
                basis = Basis.OPEN
            elif what in ("close", "prev", "previous"):
                if what != "close" and tokens.peek() == "close":
                    tokens.take()
            else:
                raise RuleSyntaxError(tokens.text, what, ex + " from open")
        elif tok in ("in", "within") and window is None and basis is Basis.CLOSE:
            tokens.take()
            window = tokens.duration(ex + " in 15m")
        elif tok == "for" and confirm is None:
            tokens.take()
            confirm = tokens.duration(ex + " for 2m")
        else:
            raise tokens.fail(ex + " in 15m")
    return ChangeRule(rule.direction, rule.pct, basis, window, confirm)


def _confirm_only(tokens: _Tokens, example: str) -> timedelta | None:
    confirm: timedelta | None = None
    while (tok := tokens.peek()) is not None:
        if tok == "for" and confirm is None:
            tokens.take()
            confirm = tokens.duration(example + " for 2m")
        else:
            raise tokens.fail(example + " for 2m")
    return confirm


def _end(tokens: _Tokens, example: str) -> None:
    if tokens.peek() is not None:
        raise tokens.fail(example)


def parse_rule(text: str) -> Rule:
    """Parse a rule. Forgiving where unambiguous (``DROP 10 %``, ``-10%``, ``down 10``, ``> 150``).

    Raises ``RuleSyntaxError`` naming the first word it could not understand.
    """
    if not isinstance(text, str):
        raise RuleSyntaxError(repr(text), None, EXAMPLE_ANY, why="A rule must be text")
    stripped = " ".join(text.split())
    if not stripped:
        raise RuleSyntaxError(text, None, EXAMPLE_ANY, why="The rule is empty")
    if len(stripped) > MAX_RULE_LENGTH or not stripped.isprintable():
        raise RuleSyntaxError(
            stripped[:40], None, EXAMPLE_ANY, why="That rule is too long or not plain text"
        )

    head, _, rest = stripped.partition(" ")
    if head.lower() != "news":
        stripped, benchmark = _split_benchmark(stripped)
        if benchmark is not None:
            return _relative(stripped, benchmark)
    if head.lower() == "news":
        keyword = " ".join(rest.lower().split())
        if not keyword:
            raise RuleSyntaxError(stripped, None, "news deepseek")
        if not _NEWS_KEYWORD.fullmatch(keyword):
            bad = next((c for c in keyword if not _NEWS_KEYWORD.fullmatch(c)), keyword)
            raise RuleSyntaxError(stripped, bad, "news deepseek")
        return NewsRule(keyword)

    tokens = _Tokens(stripped)
    first = tokens.take()
    assert first is not None

    if first in ("-", "+"):
        direction = Direction.DROP if first == "-" else Direction.RISE
        pct = tokens.number(EXAMPLE_CHANGE)
        tokens.percent_sign("-10%", required=True)
        _check_pct(tokens, direction, pct, EXAMPLE_CHANGE)
        return _modifiers(tokens, ChangeRule(direction, pct))

    if first in _DIRECTION_WORDS:
        direction = _DIRECTION_WORDS[first]
        ex = f"{direction.value} 10%"
        if tokens.peek() in ("by",):
            tokens.take()
        pct = tokens.number(ex)
        tokens.percent_sign(ex)
        _check_pct(tokens, direction, pct, ex)
        return _modifiers(tokens, ChangeRule(direction, pct))

    if first in _ABOVE_WORDS or first in _BELOW_WORDS:
        above = first in _ABOVE_WORDS
        ex = "above 150" if above else "below 120"
        if tokens.peek() == "$":
            tokens.take()
        price = tokens.number(ex)
        if tokens.peek() in _PCT_WORDS:
            raise RuleSyntaxError(
                stripped, tokens.peek(), ex, why="above/below take a price, not a percentage"
            )
        return LevelRule(above, price, _confirm_only(tokens, f"{first} {_num(price)}"))

    if first == "gap":
        direction = Direction.MOVE
        if tokens.peek() in ("up", "down"):
            direction = Direction.RISE if tokens.take() == "up" else Direction.DROP
        pct = tokens.number("gap 4%")
        tokens.percent_sign("gap 4%")
        _check_pct(tokens, direction, pct, "gap 4%")
        _end(tokens, "gap 4%")
        return GapRule(direction, pct)

    if first == "volume":
        multiple = tokens.number("volume 3x")
        if tokens.peek() in ("x", "times"):
            tokens.take()
        _end(tokens, "volume 3x")
        return VolumeRule(multiple)

    if first == "breadth":
        ex = "breadth 5 of 8 drop 5%"
        count = tokens.integer(ex)
        of: int | None = None
        if tokens.peek() == "of":
            tokens.take()
            of = tokens.integer(ex)
            if of < count:
                raise RuleSyntaxError(
                    stripped, None, ex, why=f"{count} of {of} cannot happen: {count} > {of}"
                )
        word = tokens.take()
        if word not in _DIRECTION_WORDS:
            raise RuleSyntaxError(stripped, word, ex)
        direction = _DIRECTION_WORDS[word]
        pct = tokens.number(ex)
        tokens.percent_sign(ex)
        _check_pct(tokens, direction, pct, ex)
        confirm = _confirm_only(tokens, ex)
        return BreadthRule(count, direction, pct, of, confirm)

    if first[0].isdigit() or first[0] == ".":
        raise RuleSyntaxError(
            stripped,
            first,
            EXAMPLE_CHANGE,
            why=f'"{first}" alone is ambiguous: say drop, rise, move, above or below',
        )
    raise RuleSyntaxError(stripped, first, EXAMPLE_ANY)


_VERSUS = re.compile(r"\s+(?:vs\.?|versus)\s+(\S+)", re.IGNORECASE)
EXAMPLE_RELATIVE = "drop 5% vs NQ=F"


def _split_benchmark(text: str) -> tuple[str, str | None]:
    """``drop 5% vs NQ=F for 2m`` -> (``drop 5% for 2m``, ``NQ=F``). The symbol is cut out
    before tokenising, which would split ``NQ=F`` at the ``=``."""
    found = list(_VERSUS.finditer(text))
    if not found:
        return text, None
    if len(found) > 1:
        raise RuleSyntaxError(text, "vs", EXAMPLE_RELATIVE, why="A rule has one benchmark")
    m = found[0]
    try:
        symbol = normalize_symbol(m.group(1))
    except SymbolError as exc:
        raise RuleSyntaxError(text, m.group(1), EXAMPLE_RELATIVE, why=str(exc).rstrip(".")) from exc
    return (text[: m.start()] + text[m.end() :]).strip(), symbol


def _relative(text: str, benchmark: str) -> ChangeRule:
    rule = parse_rule(text)
    if not isinstance(rule, ChangeRule) or rule.window is not None or rule.basis is not Basis.CLOSE:
        raise RuleSyntaxError(
            f"{text} vs {benchmark}",
            "vs",
            EXAMPLE_RELATIVE,
            why='"vs SYMBOL" goes with drop, rise or move against the previous close',
        )
    return ChangeRule(rule.direction, rule.pct, rule.basis, None, rule.confirm, benchmark)


def rule_target_problem(rule: Rule, target: str) -> str | None:
    """Why ``rule`` cannot watch ``target`` (one friendly line), or None when it fits."""
    is_basket = target.lower().startswith("basket:")
    if isinstance(rule, BreadthRule) and not is_basket:
        return (
            f'"breadth" counts the names of a basket, and {target} is one symbol. '
            'Try for example: "/watch basket:ai breadth 5 of 8 drop 5%".'
        )
    return None


def watch_problem(rule_text: str, target: str) -> str | None:
    """Why a stored watch cannot be evaluated (its rule no longer parses, or does not fit its
    target), or None. The engine skips such a watch; ``/watchlist`` shows it as broken."""
    try:
        rule = parse_rule(rule_text)
    except RuleSyntaxError as exc:
        return str(exc)
    return rule_target_problem(rule, target)
