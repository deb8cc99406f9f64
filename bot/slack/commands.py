"""Which slash commands the Slack app registers: Slack's name rules, its reserved names, a prefix.

The manifest (``bot.slack.manifest``) and the Bolt app (``bot.slack.app``) both take their list
from ``slack_commands`` so that what is registered with Slack is exactly what is listened for.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from alerts.commands import CommandSpec

# Slack's built-in commands: an app cannot register them, and a manifest listing one is refused
# as a whole. The second group Slack (or widely installed apps) also claims; avoid them too.
SLACK_BUILTIN_COMMANDS = frozenset(
    {
        "me", "status", "away", "dnd", "shrug", "remind", "msg", "feed", "who", "collapse",
        "expand", "leave", "join", "open", "search", "topic", "mute", "pro", "shortcuts",
        "invite", "kick", "remove", "archive", "rename", "call", "giphy",
    }
)  # fmt: skip
# Generic words other apps in a workspace register too: whichever app was installed last wins,
# so an unprefixed `/help` or `/price` may reach somebody else's bot.
GENERIC_COMMANDS = frozenset({"help", "price", "news"})
RESERVED_COMMANDS = SLACK_BUILTIN_COMMANDS | GENERIC_COMMANDS

# What Slack offers beyond text (``alerts.commands.ROLE_PINGS``...): nothing yet, so commands
# that need a feature are neither registered nor listed.
FEATURES: frozenset[str] = frozenset()

# The one command that always exists and reaches every other: `/marketbot watch NVDA`.
UMBRELLA = "marketbot"

SLACK_NAME = re.compile(r"[a-z0-9_-]+")
MAX_COMMAND_LENGTH = 32  # including the leading slash
MAX_COMMANDS = 50  # per app
PREFIX_PATTERN = re.compile(r"[a-z0-9_-]*")


class CommandNameError(ValueError):
    """A prefix (or name) Slack would refuse; the message is one line naming the problem."""


@dataclass(frozen=True, slots=True)
class SlackCommand:
    """One registered slash command and what it runs: a command of the router, or the umbrella."""

    slash: str  # "/mb-watch"
    spec: CommandSpec | None  # None: the umbrella, whose first word names the command


def _longest_name(specs: Sequence[CommandSpec]) -> int:
    return max([len(UMBRELLA), *(len(spec.name) for spec in specs)])


def validate_prefix(prefix: str, specs: Sequence[CommandSpec] = ()) -> str:
    """The prefix as given when Slack accepts every name it makes; else ``CommandNameError``.

    Nothing is cut or lowered silently: a command that does not match what the user typed in
    the settings would be a command nobody can find.
    """
    if not PREFIX_PATTERN.fullmatch(prefix):
        raise CommandNameError(
            f"command prefix {prefix!r} may contain only lowercase letters, digits, - and _ "
            "(Slack's rule for command names), e.g. mb-"
        )
    room = MAX_COMMAND_LENGTH - 1 - _longest_name(specs or _all_specs())
    if len(prefix) > room:
        raise CommandNameError(
            f"command prefix {prefix!r} is {len(prefix)} characters; at most {room} fit, since "
            f"Slack allows {MAX_COMMAND_LENGTH} characters per command including the slash"
        )
    return prefix


def _all_specs() -> Sequence[CommandSpec]:
    from alerts.commands import COMMANDS

    return COMMANDS


def slack_commands(prefix: str, specs: Sequence[CommandSpec]) -> list[SlackCommand]:
    """The umbrella first, then every command whose name Slack and other apps leave free.

    With a prefix nothing collides (``/mb-mute`` is nobody's), so every command is registered.
    """
    validate_prefix(prefix, specs)
    found = [SlackCommand(f"/{prefix}{UMBRELLA}", None)]
    for spec in offered(specs):
        name = f"{prefix}{spec.name}"
        if name in RESERVED_COMMANDS or name == UMBRELLA:
            continue  # still reachable as `/marketbot <name> ...`
        found.append(SlackCommand(f"/{name}", spec))
    if len(found) > MAX_COMMANDS:
        raise CommandNameError(f"{len(found)} slash commands; Slack allows {MAX_COMMANDS} per app")
    return found


def spellings(prefix: str, specs: Sequence[CommandSpec]) -> dict[str, str]:
    """How each command is typed in this workspace: ``/mb-watch`` where it is registered, else
    through the umbrella (``/marketbot help``: an unprefixed ``/help`` is left to others)."""
    registered = {c.spec.name: c.slash for c in slack_commands(prefix, specs) if c.spec is not None}
    umbrella = f"/{prefix}{UMBRELLA}"
    return {spec.name: registered.get(spec.name, f"{umbrella} {spec.name}") for spec in specs}


# A command named at the start of a code span, as the command layer writes hints: `/help`,
# `/watch NVDA drop 10%`.
_COMMAND_MENTION = re.compile(r"`/([a-z][a-z0-9_-]*)(?=[`\s])")


def spell_commands(text: str, spelling: Mapping[str, str]) -> str:
    """``text`` with each command mention as it is typed on Slack (see :func:`spellings`).

    The command layer names commands the way the console and Discord type them (``/help``); a
    Slack user following "Try `/help`" would reach another app or nothing. Names it does not
    know (a typo quoted back) stay as they are.
    """

    def spelled(match: re.Match[str]) -> str:
        name = match.group(1)
        return "`" + spelling.get(name, "/" + name)

    return _COMMAND_MENTION.sub(spelled, text)


def unregistered(prefix: str, specs: Sequence[CommandSpec]) -> list[str]:
    """Commands that only the umbrella reaches with this prefix (for docs and the CLI's note)."""
    registered = {c.spec.name for c in slack_commands(prefix, specs) if c.spec is not None}
    return [spec.name for spec in offered(specs) if spec.name not in registered]


def offered(specs: Sequence[CommandSpec]) -> list[CommandSpec]:
    """The commands Slack can run: those needing no feature it lacks."""
    return [spec for spec in specs if spec.requires is None or spec.requires in FEATURES]
