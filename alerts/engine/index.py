"""The per-symbol index: rules sorted by trigger level, so a tick costs the rules it crosses."""

from __future__ import annotations

from bisect import bisect_left, bisect_right
from datetime import timedelta

from alerts.lifecycle import Policy
from alerts.models import MarketSession, Watch
from alerts.rules import Rule

LADDER_FAMILIES = ("close-drop", "close-rise", "close-move", "open-drop", "open-rise", "open-move")
ABOVE, BELOW = "above", "below"
PCT_FAMILIES = frozenset(LADDER_FAMILIES)
OTHER, AGGREGATE, NEWS = "other", "aggregate", "news"


class Binding:
    """One rule applied to one symbol: the unit the lifecycle runs on."""

    __slots__ = (
        "channel",
        "confirm",
        "family",
        "key",
        "level",
        "policy",
        "rearm",
        "rule",
        "step",
        "symbol",
        "text",
        "watch",
    )

    def __init__(self, watch: Watch, rule: Rule, symbol: str, family: str, level: float) -> None:
        self.watch = watch
        self.rule = rule
        self.symbol = symbol
        self.family = family
        self.level = level
        self.channel = watch.channel
        self.key = (watch.id, symbol)
        self.text = rule.canonical
        confirm = getattr(rule, "confirm", None)
        self.confirm: timedelta | None = confirm if isinstance(confirm, timedelta) else None
        # How the lifecycle treats it (confirm, cooldown, the channel's resolved notices);
        # the engine sets it on binding and when the channel's settings change.
        self.policy = Policy(confirm=self.confirm)
        # A ladder rule's recovery level (its level minus the hysteresis band) and escalation
        # step (0: no tiers), from the engine's config: set with the policy, read per quote.
        self.rearm = level
        self.step = 0.0


class Ladder:
    """Rules of one family on one symbol, sorted by trigger level in metric space."""

    __slots__ = ("items", "last", "levels")

    def __init__(self) -> None:
        self.levels: list[float] = []
        self.items: list[Binding] = []
        self.last: float | None = None  # the metric when this ladder was last evaluated

    def add(self, b: Binding) -> None:
        i = bisect_right(self.levels, b.level)
        self.levels.insert(i, b.level)
        self.items.insert(i, b)

    def candidates(self, m1: float) -> list[Binding]:
        """Armed rules that the metric moving from ``last`` to ``m1`` may have crossed.

        Only an upward move of the metric can cross a trigger, and only the triggers in
        ``(last, m1]``; with no ``last`` (first quote, new day, after NoData) every trigger at
        or below ``m1``. Everything else is either still below its level or in ``active``.
        """
        m0 = self.last
        if m0 is None:
            return self.items[: bisect_right(self.levels, m1)]
        if m1 > m0:
            return self.items[bisect_right(self.levels, m0) : bisect_right(self.levels, m1)]
        return []

    def remove(self, b: Binding) -> None:
        i = bisect_left(self.levels, b.level)
        while i < len(self.items):
            if self.items[i] is b:
                del self.levels[i]
                del self.items[i]
                return
            i += 1


class SymbolIndex:
    __slots__ = (
        "active",
        "aggregates",
        "bindings",
        "followers",
        "ladders",
        "last_open",
        "last_prev",
        "last_seen",
        "max_window",
        "others",
        "unsettled",
    )

    def __init__(self) -> None:
        self.ladders: dict[str, Ladder] = {}
        # Bindings that must be looked at on every quote: not armed, or armed while the
        # condition holds (held back by confirmation or cooldown). Every other armed binding
        # has its level above the ladder's last metric, which is what makes bisect sound.
        self.active: dict[tuple[int, str], Binding] = {}
        # The active bindings that an unchanged quote can still move: just bound, pending a
        # confirmation, held back by a cooldown, or firing with repeats due. The rest (firing,
        # no repeats: most of a storm's aftermath) only a new price can move, so a symbol
        # with none of these and an unchanged quote is skipped.
        self.unsettled: dict[tuple[int, str], Binding] = {}
        self.others: dict[tuple[int, str], Binding] = {}
        self.bindings: dict[tuple[int, str], Binding] = {}
        self.aggregates: dict[tuple[int, str], Binding] = {}  # basket rules this symbol feeds
        self.followers: dict[tuple[int, str], Binding] = {}  # "vs" rules benchmarked on it
        self.max_window: timedelta | None = None
        self.last_prev: float | None = None
        self.last_open: float | None = None
        self.last_seen: tuple[float, float, float | None, MarketSession] | None = None

    def reset_levels(self, prefix: str | None = None) -> None:
        self.last_seen = None
        for name, ladder in self.ladders.items():
            if prefix is None or name.startswith(prefix):
                ladder.last = None
