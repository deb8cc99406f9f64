"""Named groups of symbols: the built-in examples and how a channel's own baskets resolve."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

BASKET_PREFIX = "basket:"

# The AI trade as of early 2025: the names the DeepSeek selloff of 2025-01-27 hit hardest
# (chips, the hyperscalers and the lithography monopoly). Eight, so "6 of 8" reads naturally.
BUILTIN_BASKETS: Mapping[str, tuple[str, ...]] = {
    "ai": ("NVDA", "AMD", "AVGO", "MSFT", "GOOGL", "META", "ASML", "TSM"),
}


def is_basket_target(target: str) -> bool:
    return target.lower().startswith(BASKET_PREFIX)


def basket_name(target: str) -> str:
    """``basket:AI`` -> ``ai``; basket names are case-insensitive."""
    return target[len(BASKET_PREFIX) :].lower()


def resolve_basket(
    name: str, channel_baskets: Mapping[str, Sequence[str]] | None = None
) -> tuple[str, ...]:
    """The members of a basket: the channel's own definition wins over the built-in one."""
    key = name.lower()
    if channel_baskets is not None:
        for own, members in channel_baskets.items():
            if own.lower() == key:
                return tuple(members)
    return BUILTIN_BASKETS.get(key, ())


def all_baskets(
    channel_baskets: Mapping[str, Sequence[str]] | None = None,
) -> dict[str, tuple[str, ...]]:
    """Built-in baskets overlaid with the channel's own, by lower-case name."""
    merged = {name: tuple(members) for name, members in BUILTIN_BASKETS.items()}
    for name, members in (channel_baskets or {}).items():
        merged[name.lower()] = tuple(members)
    return merged
