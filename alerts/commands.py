"""The one command layer: parses what people type and answers it, for every platform alike."""

from __future__ import annotations

import difflib
import logging
import re
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime, tzinfo
from typing import Literal, Protocol, runtime_checkable
from zoneinfo import ZoneInfo

from alerts.baskets import BASKET_PREFIX, BUILTIN_BASKETS, all_baskets
from alerts.digest import (
    DIGEST_INDEX_SYMBOLS,
    DigestSettingError,
    compose_digest,
    digest_symbols,
    digest_text,
    parse_digest_time,
    parse_zone,
)
from alerts.durations import DurationError, format_duration, parse_duration
from alerts.models import Alert, AlertMessage, Mute, NewsItem, Quote, Watch
from alerts.ports import Clock, Store, SymbolChecker, SymbolStatus
from alerts.rules import (
    DEFAULT_RULE_TEXT,
    RuleSyntaxError,
    parse_rule,
    rule_target_problem,
    watch_problem,
)
from alerts.symbols import EXAMPLES, SymbolError, normalize_symbol
from alerts.wording import local_time, plural

log = logging.getLogger(__name__)

# A role as the core receives it: the platform's own id for it, which its adapter read from
# the platform's syntax (Discord's mention, bot.discord.roles). Only "off" means something here.
_ROLE_ID = re.compile(r"[A-Za-z0-9_-]{1,64}")
MAX_COMMAND_LENGTH = 500
MAX_NOTE_LENGTH = 200
MAX_BASKET_SIZE = 50
MAX_ALERTS_LISTED = 50
NOTE_SEPARATOR = " -- "
ROLE_USAGE = "Give a role mention or a role id, for example `/pingrole @traders`."
BASKET_USAGE = (
    "Usage: `/basket create NAME SYMBOL...`, `/basket list`, `/basket show NAME`, "
    "`/basket delete NAME`."
)

# What an argument holds, so each platform can offer the right input: symbols to suggest,
# numbers with bounds, a fixed set of choices, a note (typed after `--`).
# Things only some platforms can do. A command that needs one says so (``CommandSpec.requires``),
# each adapter says which it offers (``CommandContext.features``), and nothing else in the core
# knows which platform is which.
ROLE_PINGS = "role_pings"  # notify a role of the channel on critical alerts (Discord)

ArgKind = Literal[
    "symbol", "target", "rule", "text", "note", "integer", "duration", "scope", "choice", "role"
]  # "role": a role of the platform's; its adapter hands the core the role's id (or "off")


@dataclass(frozen=True, slots=True)
class CommandContext:
    """Who asked, where. ``can_manage`` is decided by the platform adapter (Manage Channels...)."""

    channel: str
    user: str
    platform: str
    can_manage: bool = True
    features: frozenset[str] = frozenset()  # what this platform offers (``ROLE_PINGS``...)


@dataclass(frozen=True, slots=True)
class Reply:
    """The answer: plain text with light markdown (``*bold*``, `` `code` ``). Adapters format it."""

    text: str
    ok: bool = True
    changed: bool = False  # the channel's watches, baskets or mutes changed


@dataclass(frozen=True, slots=True)
class ArgSpec:
    name: str
    description: str
    kind: ArgKind
    required: bool = False
    choices: tuple[str, ...] = ()
    minimum: int | None = None  # for integers
    maximum: int | None = None


@dataclass(frozen=True, slots=True)
class CommandSpec:
    """What platforms need to register a command (Slack manifest, Discord app_commands)."""

    name: str
    usage: str
    summary: str
    changes_channel: bool
    args: tuple[ArgSpec, ...] = ()
    examples: tuple[str, ...] = ()
    requires: str | None = None  # a platform feature; platforms without it do not offer it
    # First words with which a command that changes the channel only reads, so anyone may use
    # it that way ("" is the bare command: `/digest` shows the digest).
    read_forms: tuple[str, ...] = ()


class CommandHandler(Protocol):
    """The command layer as every adapter sees it (``CommandRouter`` is the one there is).

    It lives in the core so adapters depend on it and never on each other.
    """

    def handle(self, text: str, ctx: CommandContext) -> Reply: ...

    def command_names(self) -> Sequence[CommandSpec]: ...


@runtime_checkable
class SuggestsSymbols(Protocol):
    """A command layer that knows which symbols to suggest as someone types one (``CommandRouter``
    does: the channel's own first), for platforms that autocomplete."""

    def symbol_choices(self, channel: str) -> Sequence[str]: ...


class MarketView(Protocol):
    """What commands may ask of the running bot's market data (latest quotes, headlines)."""

    def latest_quote(self, symbol: str) -> Quote | None: ...

    def recent_news(self, symbols: Sequence[str], limit: int) -> list[NewsItem]: ...


@runtime_checkable
class DigestView(Protocol):
    """A market view that builds the channel's digest itself (the running bot does), so
    ``/digest`` shows exactly what the scheduled digest posts."""

    def digest(self, channel: str) -> AlertMessage: ...


@runtime_checkable
class DigestPoster(Protocol):
    """A running bot that can post the channel's digest now as a message, chart included,
    exactly as the scheduled one is posted (and without standing in for it)."""

    def post_digest(self, channel: str) -> bool:
        """True once it is queued to be posted; False where nothing would deliver it."""
        ...


@dataclass(frozen=True, slots=True)
class DataOutage:
    """The market data for a symbol is missing: since when, and the reason a person reads."""

    since: datetime
    reason: str


@runtime_checkable
class DataStatusView(Protocol):
    """A market view that knows when a symbol's data stopped coming (the running bot does),
    so ``/price`` can say the data is down instead of "no quote yet"."""

    def data_outage(self, symbol: str) -> DataOutage | None: ...


class CommandError(Exception):
    """Bad input: the message is the one friendly line the user sees."""


@dataclass(frozen=True, slots=True)
class ParsedCommand:
    name: str
    args: tuple[str, ...]
    note: str | None = None
    raw: str = field(default="", compare=False)


COMMANDS: tuple[CommandSpec, ...] = (
    CommandSpec(
        "watch",
        "/watch SYMBOL|basket:NAME|news [RULE] [-- note]",
        "Alert this channel when a symbol, basket or headline meets a rule (default: drop 10%).",
        True,
        (
            ArgSpec("target", "Symbol (NVDA, ASML.AS, NQ=F), basket:NAME or news", "target", True),
            ArgSpec("rule", "Rule, e.g. drop 10%, above 150, move 5% in 15m", "rule"),
            ArgSpec("note", "A note shown with the alert", "note"),
        ),
        ("/watch NVDA", "/watch NVDA drop 5%", "/watch basket:ai drop 5%", "/watch news deepseek"),
    ),
    CommandSpec(
        "unwatch",
        "/unwatch SYMBOL|basket:NAME|news|all [RULE|all]",
        "Stop watching: one rule, every rule of a symbol, or everything.",
        True,
        (
            ArgSpec("target", "Symbol, basket:NAME, news, or all", "target", True),
            ArgSpec("rule", "Only this rule (default: all rules of the target)", "rule"),
        ),
        ("/unwatch NVDA", "/unwatch NVDA drop 10%", "/unwatch all"),
    ),
    CommandSpec("watchlist", "/watchlist", "List this channel's watches.", False),
    CommandSpec(
        "price",
        "/price SYMBOL",
        "The latest quote the bot has, premarket included.",
        False,
        (ArgSpec("symbol", "Symbol, e.g. NVDA", "symbol", True),),
        ("/price NVDA",),
    ),
    CommandSpec(
        "mute",
        "/mute SYMBOL|basket:NAME|all DURATION",
        "Silence alerts for a while; they are still tracked and summarised when the mute ends.",
        True,
        (
            ArgSpec("scope", "Symbol, basket:NAME or all", "scope", True),
            ArgSpec("duration", "How long, e.g. 30m, 2h, 1d", "duration", True),
        ),
        ("/mute NVDA 2h", "/mute all 30m"),
    ),
    CommandSpec(
        "unmute",
        "/unmute [SYMBOL|basket:NAME|all]",
        "End a mute early (default: all mutes of this channel).",
        True,
        (ArgSpec("scope", "Symbol, basket:NAME or all", "scope"),),
        ("/unmute NVDA",),
    ),
    CommandSpec(
        "digest",
        "/digest [on [HH:MM] [ZONE]|off]",
        "Show the premarket digest now, or post it daily on trading days (or stop).",
        True,
        (
            ArgSpec(
                "action", "on or off (omit to show the digest now)", "choice", False, ("on", "off")
            ),
            ArgSpec("time", "HH:MM, for on (default: the bot's digest time)", "text"),
            ArgSpec("zone", "Time zone, e.g. America/New_York, Europe/Berlin, ET", "text"),
        ),
        ("/digest", "/digest on 08:00", "/digest on 07:30 Europe/Berlin", "/digest off"),
        read_forms=("",),
    ),
    CommandSpec(
        "resolved",
        "/resolved on|off",
        "Also tell this channel when a firing alert recovers (off by default).",
        True,
        (ArgSpec("action", "on or off", "choice", True, ("on", "off")),),
        ("/resolved on",),
    ),
    CommandSpec(
        "pingrole",
        "/pingrole @ROLE|off",
        "Discord: ping a role on critical alerts in this channel (nobody is pinged otherwise).",
        True,
        (ArgSpec("role", "The role to ping (a mention or its id), or off", "role", True),),
        ("/pingrole @traders", "/pingrole off"),
        requires=ROLE_PINGS,
    ),
    CommandSpec(
        "alerts",
        "/alerts [N]",
        f"The channel's N most recent alerts (default 10, at most {MAX_ALERTS_LISTED}).",
        False,
        (ArgSpec("count", "How many", "integer", minimum=1, maximum=MAX_ALERTS_LISTED),),
        ("/alerts", "/alerts 25"),
    ),
    CommandSpec(
        "news",
        "/news [SYMBOL]",
        "Recent headlines for a symbol or for the channel's watches.",
        False,
        (ArgSpec("symbol", "Symbol, e.g. NVDA", "symbol"),),
        ("/news", "/news NVDA"),
    ),
    CommandSpec(
        "basket",
        "/basket create NAME SYMBOL... | list | show NAME | delete NAME",
        "Define a named group of symbols to watch together (basket:NAME).",
        True,
        (
            ArgSpec(
                "action",
                "create, list, show or delete",
                "choice",
                True,
                ("create", "list", "show", "delete"),
            ),
            ArgSpec("name", "Basket name", "text"),
            ArgSpec("symbols", "Symbols separated by spaces (for create)", "text"),
        ),
        ("/basket create ai NVDA AMD AVGO MSFT GOOGL META ASML", "/basket list"),
        read_forms=("list", "show"),
    ),
    CommandSpec(
        "help",
        "/help [COMMAND]",
        "What the bot can do.",
        False,
        (ArgSpec("command", "A command name", "text"),),
    ),
)


def parse_command(text: str) -> ParsedCommand:
    """Split ``/watch NVDA drop 10% -- note`` into name, words and note; refuse bad input."""
    if "\x00" in text or any(not ch.isprintable() and ch not in "\t\n" for ch in text):
        raise CommandError("That message has characters a command cannot contain. Try `/help`.")
    stripped = " ".join(text.split())
    if not stripped:
        raise CommandError("Empty command. Try `/help`.")
    if len(stripped) > MAX_COMMAND_LENGTH:
        raise CommandError(
            f"That command is too long ({len(stripped)} characters, at most "
            f"{MAX_COMMAND_LENGTH}). Try `/help`."
        )
    # Whitespace is folded above, so the separator matches however it was typed.
    body, sep, note = stripped.partition(NOTE_SEPARATOR)
    note_text = note.strip() if sep else None
    words = body.split()
    name = words[0].lstrip("/").lower()
    if not name:
        raise CommandError("Empty command. Try `/help`.")
    return ParsedCommand(name=name, args=tuple(words[1:]), note=note_text or None, raw=stripped)


class CommandRouter:
    """Parses, checks permission, runs the handler, and always answers with one Reply."""

    def __init__(
        self,
        store: Store,
        clock: Clock,
        *,
        market: MarketView | None = None,
        default_rule: str = DEFAULT_RULE_TEXT,
        on_change: Callable[[str], None] | None = None,
        digest_time: str = "08:00",
        timezone: str = "America/New_York",
        symbols: SymbolChecker | None = None,
    ) -> None:
        """``symbols``: asks the data source whether a new symbol exists (live bots); without
        one, any well-formed symbol is accepted (replays, tests, the offline CLI)."""
        self._symbols = symbols
        self._digest_time = digest_time
        self._timezone = timezone
        # Every time a reply shows is in this zone (the bot's display zone), never bare UTC.
        self._zone: tzinfo = ZoneInfo(timezone)
        self._store = store
        self._clock = clock
        self._market = market
        self._default_rule = default_rule
        self._on_change = on_change
        self._handlers: dict[str, Callable[[ParsedCommand, CommandContext], Reply]] = {
            "watch": self._watch,
            "unwatch": self._unwatch,
            "watchlist": self._watchlist,
            "price": self._price,
            "mute": self._mute,
            "unmute": self._unmute,
            "digest": self._digest,
            "resolved": self._resolved,
            "pingrole": self._pingrole,
            "alerts": self._alerts,
            "news": self._news,
            "basket": self._basket,
            "help": self._help,
        }
        self._specs = {spec.name: spec for spec in COMMANDS}

    @staticmethod
    def command_names() -> tuple[CommandSpec, ...]:
        return COMMANDS

    def symbol_choices(self, channel: str) -> list[str]:
        """The symbols to suggest in ``channel``: its own watched ones first (see
        :func:`symbol_choices`)."""
        return symbol_choices(self._watched_symbols(channel), self._store.list_baskets(channel))

    def handle(self, text: str, ctx: CommandContext) -> Reply:
        try:
            command = parse_command(text)
            handler = self._handlers.get(command.name)
            if handler is None:
                raise CommandError(_unknown_command(command, ctx))
            spec = self._specs[command.name]
            if not offered_on(spec, ctx):
                return Reply(_not_available(spec), ok=False)
            form = command.args[0].lower() if command.args else ""
            if spec.changes_channel and form not in spec.read_forms and not ctx.can_manage:
                return Reply(
                    f"`/{command.name}` changes this channel's alerts: you need the Manage "
                    "Channels permission (or the bot's manager role).",
                    ok=False,
                )
            reply = handler(command, ctx)
        except CommandError as exc:
            return Reply(str(exc), ok=False)
        except Exception:
            # Whoever typed the command still gets an answer; the traceback is logged once.
            log.exception("command %r in %s failed", text[:200], ctx.channel)
            return Reply("Something went wrong, it is logged.", ok=False)
        if reply.changed and self._on_change is not None:
            self._on_change(ctx.channel)
        return reply

    # -- targets -------------------------------------------------------------------------

    def _target(self, word: str, ctx: CommandContext) -> str:
        lowered = word.lower()
        if lowered == "news":
            return "news"
        if lowered.startswith(BASKET_PREFIX):
            name = lowered.removeprefix(BASKET_PREFIX)
            if name not in self._baskets(ctx.channel):
                known = ", ".join(sorted(self._baskets(ctx.channel))) or "none yet"
                raise CommandError(
                    f"No basket `{name[:30]}` in this channel (known: {known}). "
                    "Create one with `/basket create NAME SYMBOL...`."
                )
            return BASKET_PREFIX + name
        try:
            return normalize_symbol(word)
        except SymbolError as exc:
            raise CommandError(str(exc)) from None

    def _baskets(self, channel: str) -> dict[str, tuple[str, ...]]:
        return all_baskets(self._store.list_baskets(channel))

    def _rule_text(self, target: str, words: Sequence[str]) -> str:
        text = " ".join(words) if words else self._default_rule
        if target == "news":
            text = "news " + text if words else ""
            if not words:
                raise CommandError(
                    "Say which keyword to watch, for example `/watch news deepseek`."
                )
        try:
            rule = parse_rule(text)
        except RuleSyntaxError as exc:
            raise CommandError(str(exc)) from None
        problem = rule_target_problem(rule, target)
        if problem is not None:
            raise CommandError(problem)
        return rule.canonical

    # -- handlers --------------------------------------------------------------------------

    def _watch(self, command: ParsedCommand, ctx: CommandContext) -> Reply:
        if not command.args:
            raise CommandError(
                "Say what to watch, for example `/watch NVDA` or `/watch NVDA drop 5%`."
            )
        target = self._target(command.args[0], ctx)
        rule_text = self._rule_text(target, command.args[1:])
        unchecked = self._check_symbols([target] if _is_symbol(target) else [])
        note = command.note[:MAX_NOTE_LENGTH] if command.note else None
        watch, created = self._store.add_watch(
            ctx.channel, target, rule_text, now=self._clock.now(), created_by=ctx.user, note=note
        )
        if not created:
            return Reply(f"Already watching *{target}* for `{rule_text}`.")
        what = target if target != "news" else "the news"
        return Reply(
            f"Watching *{what}*: alert on `{rule_text}` (watch #{watch.id}).{unchecked}",
            changed=True,
        )

    def _check_symbols(self, symbols: Sequence[str]) -> str:
        """Refuses a symbol the data source says does not exist; returns a note (or "") for
        symbols it could not be asked about, which are accepted: an outage must not stop
        anyone from setting up watches."""
        if self._symbols is None:
            return ""
        for index, symbol in enumerate(symbols):
            check = self._symbols.check(symbol)
            if check.status is SymbolStatus.UNKNOWN:
                why = f" ({check.detail})" if check.detail else ""
                raise CommandError(
                    f"Yahoo does not know the symbol `{symbol}`{why}. "
                    f"Check the spelling; symbols look like {EXAMPLES}."
                )
            if check.status is SymbolStatus.UNCHECKED:
                # Asking about the rest would only wait for the same outage again.
                rest = list(symbols[index:])
                why = f" ({check.detail})" if check.detail else ""
                verb = "exists" if len(rest) == 1 else "exist"
                return (
                    f" Note: Yahoo could not be asked whether {', '.join(rest)} {verb}{why}; "
                    "accepted anyway (a symbol Yahoo does not know shows as data unavailable)."
                )
        return ""

    def _unwatch(self, command: ParsedCommand, ctx: CommandContext) -> Reply:
        if not command.args:
            raise CommandError(
                "Say what to stop watching, for example `/unwatch NVDA` or `/unwatch all`."
            )
        first = command.args[0]
        if first.lower() == "all" and len(command.args) == 1:
            removed = self._store.remove_watches(ctx.channel, None, None)
            if not removed:
                return Reply("This channel watches nothing; nothing to remove.")
            return Reply(f"Removed this channel's {plural(len(removed), 'watch')}.", changed=True)
        target = self._target_for_removal(first, ctx)
        rest = command.args[1:]
        rule_text = (
            None
            if not rest or (len(rest) == 1 and rest[0].lower() == "all")
            else (self._rule_text(target, rest))
        )
        removed = self._store.remove_watches(ctx.channel, target, rule_text)
        if not removed:
            what = f"`{rule_text}` on *{target}*" if rule_text else f"*{target}*"
            return Reply(f"This channel was not watching {what}. See `/watchlist`.", ok=False)
        rules = ", ".join(f"`{watch.rule_text}`" for watch in removed)
        return Reply(f"Stopped watching *{target}* ({rules}).", changed=True)

    def _target_for_removal(self, word: str, ctx: CommandContext) -> str:
        # A basket deleted since may still have watches; removing them must still work.
        if word.lower().startswith(BASKET_PREFIX):
            return word.lower()
        return self._target(word, ctx)

    def _watchlist(self, command: ParsedCommand, ctx: CommandContext) -> Reply:
        watches = self._store.list_watches(ctx.channel)
        if not watches:
            return Reply("This channel watches nothing yet. Try `/watch NVDA`.")
        lines = [f"*Watchlist* ({len(watches)})"]
        lines += [_watch_line(watch) for watch in watches]
        mutes = self._store.active_mutes(ctx.channel, self._clock.now())
        if mutes:
            lines.append(
                "Muted: "
                + ", ".join(f"{m.scope} until {local_time(m.until, self._zone)}" for m in mutes)
            )
        return Reply("\n".join(lines))

    def _price(self, command: ParsedCommand, ctx: CommandContext) -> Reply:
        if len(command.args) != 1:
            raise CommandError("Usage: `/price SYMBOL`, for example `/price NVDA`.")
        symbol = self._target(command.args[0], ctx)
        if symbol in ("news",) or symbol.startswith(BASKET_PREFIX):
            raise CommandError("`/price` takes one symbol, for example `/price NVDA`.")
        quote = self._market.latest_quote(symbol) if self._market else None
        outage = (
            self._market.data_outage(symbol) if isinstance(self._market, DataStatusView) else None
        )
        watched = symbol in self._watched_symbols(ctx.channel)
        if outage is not None:
            down = (
                f"Market data for *{symbol}* is unavailable since "
                f"{local_time(outage.since, self._zone)} ({outage.reason})"
            )
            if quote is not None and quote.price is not None:
                return Reply(f"{self._quote_text(quote)}\n{down}: that is the last price seen.")
            follow = "" if watched else f" `/watch {symbol}` to be alerted here."
            return Reply(f"{down}; the bot keeps retrying.{follow}", ok=False)
        if quote is None or quote.price is None:
            if watched:
                return Reply(
                    f"No quote for *{symbol}* yet: this channel watches it, and the bot fetches "
                    "its price while its market is open.",
                    ok=False,
                )
            # Before suggesting to watch it: a typo would be refused by /watch anyway.
            self._check_symbols([symbol])
            return Reply(
                f"No quote for *{symbol}* yet: the bot fetches prices for watched symbols while "
                f"their market is open. `/watch {symbol}` to follow it.",
                ok=False,
            )
        return Reply(self._quote_text(quote))

    def _quote_text(self, quote: Quote) -> str:
        change = quote.change_pct()
        change_text = f" ({change:+.2f}% vs previous close)" if change is not None else ""
        currency = f" {quote.currency}" if quote.currency else ""
        return (
            f"*{quote.symbol}* {quote.price:,.2f}{currency}{change_text}, "
            f"{quote.session.value} session, as of {local_time(quote.time, self._zone)}"
        )

    def _watched_symbols(self, channel: str) -> set[str]:
        """Every symbol this channel follows, directly or through a basket it watches."""
        baskets = self._baskets(channel)
        symbols: set[str] = set()
        for watch in self._store.list_watches(channel):
            if watch.target.startswith(BASKET_PREFIX):
                symbols.update(baskets.get(watch.target.removeprefix(BASKET_PREFIX), ()))
            elif watch.target != "news":
                symbols.add(watch.target)
        return symbols

    def _mute(self, command: ParsedCommand, ctx: CommandContext) -> Reply:
        if len(command.args) != 2:
            raise CommandError(
                "Usage: `/mute SYMBOL|basket:NAME|all DURATION`, for example `/mute NVDA 2h`."
            )
        scope = self._scope(command.args[0], ctx)
        try:
            duration = parse_duration(command.args[1])
        except DurationError as exc:
            raise CommandError(str(exc)) from None
        now = self._clock.now()
        self._store.add_mute(
            Mute(channel=ctx.channel, scope=scope, until=now + duration, created_at=now)
        )
        return Reply(
            f"Muted *{scope}* for {format_duration(duration)}. Alerts are still tracked; you get a "
            "summary of what you missed when the mute ends.",
            changed=True,
        )

    def _unmute(self, command: ParsedCommand, ctx: CommandContext) -> Reply:
        if len(command.args) > 1:
            raise CommandError("Usage: `/unmute [SYMBOL|basket:NAME|all]`.")
        scope = self._scope(command.args[0], ctx) if command.args else "all"
        removed = self._store.remove_mutes(ctx.channel, None if scope == "all" else scope)
        if not removed:
            return Reply(f"Nothing was muted for *{scope}*.", ok=False)
        return Reply(f"Unmuted *{scope}*.", changed=True)

    def _scope(self, word: str, ctx: CommandContext) -> str:
        if word.lower() == "all":
            return "all"
        target = self._target(word, ctx)
        if target == "news":
            raise CommandError("Mute a symbol, a basket or all, for example `/mute NVDA 2h`.")
        return target

    def _digest(self, command: ParsedCommand, ctx: CommandContext) -> Reply:
        now = self._clock.now()
        if not command.args:
            if isinstance(self._market, DigestPoster) and self._market.post_digest(ctx.channel):
                return Reply("Posting today's premarket digest here.")
            return Reply(self._digest_text(ctx.channel))
        action, rest = command.args[0].lower(), command.args[1:]
        if action == "off" and not rest:
            self._store.update_channel_settings(
                ctx.channel, lambda s: replace(s, digest=None, digest_zone=None), now
            )
            return Reply("The daily premarket digest is off for this channel.", changed=True)
        if action == "on" and len(rest) <= 2:
            try:
                at = parse_digest_time(rest[0] if rest else self._digest_time)
                zone = parse_zone(rest[1]) if len(rest) == 2 else None
            except DigestSettingError as exc:
                raise CommandError(
                    f"{exc} For example `/digest on 08:00 America/New_York`."
                ) from None
            self._store.update_channel_settings(
                ctx.channel, lambda s: replace(s, digest=at, digest_zone=zone), now
            )
            return Reply(
                f"Daily premarket digest on at {at:%H:%M} {zone or self._timezone}, "
                "NYSE trading days only.",
                changed=True,
            )
        raise CommandError(
            "Usage: `/digest`, `/digest on 08:00`, `/digest on 08:00 Europe/Berlin` or "
            "`/digest off`."
        )

    def _resolved(self, command: ParsedCommand, ctx: CommandContext) -> Reply:
        if len(command.args) != 1 or command.args[0].lower() not in ("on", "off"):
            raise CommandError("Usage: `/resolved on` or `/resolved off`.")
        enabled = command.args[0].lower() == "on"
        self._store.update_channel_settings(
            ctx.channel, lambda s: replace(s, resolved=enabled), self._clock.now()
        )
        if enabled:
            return Reply("This channel now also hears when a firing alert recovers.", changed=True)
        return Reply("Recoveries are no longer announced in this channel.", changed=True)

    def _pingrole(self, command: ParsedCommand, ctx: CommandContext) -> Reply:
        if len(command.args) != 1:
            raise CommandError("Usage: `/pingrole @ROLE` or `/pingrole off`.")
        word = command.args[0]
        now = self._clock.now()
        if word.lower() == "off":
            self._store.update_channel_settings(
                ctx.channel, lambda s: replace(s, ping_role=None), now
            )
            return Reply("Critical alerts in this channel ping nobody.", changed=True)
        if _ROLE_ID.fullmatch(word) is None:
            raise CommandError(ROLE_USAGE)
        role = word
        self._store.update_channel_settings(ctx.channel, lambda s: replace(s, ping_role=role), now)
        # Show the id, not a mention: this reply must not ping the role itself.
        return Reply(f"Critical alerts in this channel will ping role id {role}.", changed=True)

    def _digest_text(self, channel: str) -> str:
        """The digest the daily job posts, as reply text: the running bot builds it (same
        builder as the schedule); without one, it is composed from what this view knows."""
        if isinstance(self._market, DigestView):
            return digest_text(self._market.digest(channel))
        targets = [w.target for w in self._store.list_watches(channel)]
        symbols, baskets = digest_symbols(targets, self._baskets(channel))
        if not symbols:
            return "Nothing to digest: this channel watches no symbols yet. Try `/watch NVDA`."
        latest = {}
        for symbol in (*symbols, *DIGEST_INDEX_SYMBOLS):
            quote = self._market.latest_quote(symbol) if self._market else None
            if quote is not None:
                latest[symbol] = quote
        now = self._clock.now()
        digest = compose_digest(channel, symbols, latest, day=now.date(), now=now, baskets=baskets)
        return digest_text(digest)

    def _alerts(self, command: ParsedCommand, ctx: CommandContext) -> Reply:
        if len(command.args) > 1 or (command.args and not _is_number(command.args[0])):
            raise CommandError(f"Usage: `/alerts [N]`, N from 1 to {MAX_ALERTS_LISTED}.")
        count = int(command.args[0]) if command.args else 10
        if not 1 <= count <= MAX_ALERTS_LISTED:
            raise CommandError(f"Usage: `/alerts [N]`, N from 1 to {MAX_ALERTS_LISTED}.")
        alerts = self._store.recent_alerts(ctx.channel, count)
        if not alerts:
            return Reply("No alerts in this channel yet.")
        return Reply(
            "\n".join(
                [f"*Recent alerts* ({len(alerts)})", *(_alert_line(a, self._zone) for a in alerts)]
            )
        )

    def _news(self, command: ParsedCommand, ctx: CommandContext) -> Reply:
        if len(command.args) > 1:
            raise CommandError("Usage: `/news [SYMBOL]`.")
        if command.args:
            symbols = [self._target(command.args[0], ctx)]
        else:
            symbols = sorted(
                {w.target for w in self._store.list_watches(ctx.channel) if _is_symbol(w.target)}
            )
        items = self._market.recent_news(symbols, 5) if self._market else []
        if not items:
            return Reply("No recent headlines for " + (", ".join(symbols) or "this channel") + ".")
        return Reply(
            "\n".join(
                [
                    f"*News* ({', '.join(symbols) or 'all'})",
                    *(_news_line(i, self._zone) for i in items),
                ]
            )
        )

    def _basket(self, command: ParsedCommand, ctx: CommandContext) -> Reply:
        if not command.args:
            raise CommandError(BASKET_USAGE)
        action, rest = command.args[0].lower(), command.args[1:]
        if action == "list" and not rest:
            baskets = self._baskets(ctx.channel)
            lines = ["*Baskets*"] + [
                f"basket:{name}: {' '.join(symbols)}"
                + (" (built in)" if name in BUILTIN_BASKETS else "")
                for name, symbols in sorted(baskets.items())
            ]
            return Reply("\n".join(lines))
        if action == "show" and len(rest) == 1:
            name = _basket_name(rest[0])
            symbols = self._baskets(ctx.channel).get(name)
            if symbols is None:
                raise CommandError(f"No basket `{name}`. See `/basket list`.")
            return Reply(f"basket:{name}: {' '.join(symbols)}")
        if action == "create" and len(rest) >= 2:
            name = _basket_name(rest[0])
            if len(rest) - 1 > MAX_BASKET_SIZE:
                raise CommandError(f"A basket holds at most {MAX_BASKET_SIZE} symbols.")
            try:
                symbols = tuple(dict.fromkeys(normalize_symbol(word) for word in rest[1:]))
            except SymbolError as exc:
                raise CommandError(str(exc)) from None
            unchecked = self._check_symbols(symbols)
            self._store.save_basket(ctx.channel, name, symbols, now=self._clock.now())
            return Reply(
                f"Basket *basket:{name}*: {' '.join(symbols)}. "
                f"Watch it with `/watch basket:{name} drop 5%`.{unchecked}",
                changed=True,
            )
        if action == "delete" and len(rest) == 1:
            name = _basket_name(rest[0])
            if not self._store.delete_basket(ctx.channel, name):
                raise CommandError(
                    f"No basket `{name}` of this channel to delete (built-in baskets stay)."
                )
            return Reply(f"Deleted *basket:{name}*.", changed=True)
        raise CommandError(BASKET_USAGE)

    def _help(self, command: ParsedCommand, ctx: CommandContext) -> Reply:
        if command.args:
            name = command.args[0].lstrip("/").lower()
            spec = self._specs.get(name)
            if spec is None:
                close = _closest_command(name, ctx)
                hint = f"Did you mean `/help {close}`?" if close else "Try `/help`."
                raise CommandError(f"No command `{command.args[0][:30]}`. {hint}")
            if not offered_on(spec, ctx):
                raise CommandError(_not_available(spec))
            lines = [f"`{spec.usage}`", spec.summary, *(f"  e.g. `{ex}`" for ex in spec.examples)]
            return Reply("\n".join(lines))
        lines = ["*marketbot* watches prices (premarket included), futures and news."]
        lines += [f"`{spec.usage}`: {spec.summary}" for spec in COMMANDS if offered_on(spec, ctx)]
        lines.append(
            "Rules: `drop 10%`, `rise 5%`, `move 3% in 15m`, `above 150`, `below 120`, "
            "`gap 4%`, `volume 3x`, `news KEYWORD`; add `for 2m` to confirm."
        )
        return Reply("\n".join(lines))


def symbol_choices(
    watched: Iterable[str] = (), baskets: Mapping[str, Sequence[str]] | None = None
) -> list[str]:
    """Symbols worth suggesting as someone types one, each once: ``watched`` (the channel's,
    sorted), then the members of every basket (the channel's own and the built-in ones), then
    the index symbols the digest quotes."""
    found = dict.fromkeys(sorted(watched))
    for _, members in sorted(all_baskets(baskets).items()):
        found.update(dict.fromkeys(members))
    found.update(dict.fromkeys(DIGEST_INDEX_SYMBOLS))
    return list(found)


def _basket_name(word: str) -> str:
    name = word.lower().removeprefix(BASKET_PREFIX)
    if not name.replace("-", "").replace("_", "").isalnum() or len(name) > 32:
        raise CommandError(
            "Basket names are letters, digits, - and _ (at most 32), for example `ai`."
        )
    return name


def _is_number(word: str) -> bool:
    # str.isdigit() also accepts "¹" and "٣", which int() then refuses.
    return word.isascii() and word.isdigit()


def _is_symbol(target: str) -> bool:
    return target != "news" and not target.startswith(BASKET_PREFIX)


def offered_on(spec: CommandSpec, ctx: CommandContext) -> bool:
    """Whether the platform ``ctx`` comes from offers this command (it has what it requires)."""
    return spec.requires is None or spec.requires in ctx.features


def _not_available(spec: CommandSpec) -> str:
    return f"`/{spec.name}` is not available here. {spec.summary}"


def _unknown_command(command: ParsedCommand, ctx: CommandContext) -> str:
    """``/wacth NVDA`` -> did you mean ``/watch NVDA``: the closest command name, if any is."""
    typed = command.name[:30]
    close = _closest_command(command.name, ctx)
    if close is None:
        return f"Unknown command `/{typed}`. Try `/help`."
    suggestion = " ".join(("/" + close, *command.args))
    if len(suggestion) > 60:
        suggestion = "/" + close
    return f"Unknown command `/{typed}`. Did you mean `{suggestion}`? Or try `/help`."


def _closest_command(name: str, ctx: CommandContext) -> str | None:
    """The offered command nearest ``name``: never one this platform would refuse."""
    names = [spec.name for spec in COMMANDS if offered_on(spec, ctx)]
    close = difflib.get_close_matches(name, names, n=1, cutoff=0.6)
    return close[0] if close else None


def _watch_line(watch: Watch) -> str:
    note = f" ({watch.note})" if watch.note else ""
    line = f"#{watch.id} *{watch.target}* `{watch.rule_text}`{note}"
    problem = watch_problem(watch.rule_text, watch.target)
    if problem is not None:
        # Stored by an older version or edited by hand: the engine never evaluates it.
        line += f" — broken, never checked: {problem} Remove it with `/unwatch {watch.target}`."
    return line


def _alert_line(alert: Alert, zone: tzinfo) -> str:
    change = f" {alert.change_pct:+.2f}%" if alert.change_pct is not None else ""
    price = f" at {alert.price:,.2f}" if alert.price is not None else ""
    rule = f" `{alert.rule_text}`" if alert.rule_text else ""
    return f"{local_time(alert.at, zone)} {alert.kind.value} *{alert.symbol}*{change}{price}{rule}"


def _news_line(item: NewsItem, zone: tzinfo) -> str:
    source = f" ({item.source})" if item.source else ""
    return f"{local_time(item.published, zone)} {item.title}{source}"
