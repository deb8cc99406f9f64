"""The `marketbot` command line (Typer); heavy imports wait until a command actually runs."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Literal

import typer

if TYPE_CHECKING:
    from bot.settings import Settings

app = typer.Typer(
    name="marketbot",
    help="Self-hosted market alerts for Slack, Discord and the terminal: premarket, futures, news.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
db_app = typer.Typer(help="Database maintenance.", no_args_is_help=True)
app.add_typer(db_app, name="db")

ConfigOption = Annotated[
    Path | None,
    typer.Option("--config", "-c", help="A TOML or JSON settings file (environment wins over it)."),
]


class _Options:
    """Global flags from the top-level callback (``marketbot --debug --config FILE CMD``)."""

    debug = False
    config: Path | None = None


@app.callback()
def _global_options(
    debug: Annotated[
        bool, typer.Option("--debug", help="On an error, show the full traceback too.")
    ] = False,
    config: ConfigOption = None,
) -> None:
    _Options.debug = debug
    _Options.config = config


def _settings(config: Path | None) -> Settings:
    """Settings from the subcommand's ``--config``, else the top-level one (either spelling)."""
    from bot.settings import SettingsError, load_settings

    top = _Options.config
    if config is not None and top is not None and config.resolve() != top.resolve():
        raise _fail(f"--config given twice with different files ({top} and {config}): give one")
    try:
        return load_settings(config or top)
    except SettingsError as exc:
        typer.echo(f"marketbot: {exc}", err=True)
        raise typer.Exit(2) from None


def _fail(message: str, code: int = 2) -> typer.Exit:
    typer.echo(f"marketbot: {message}", err=True)
    return typer.Exit(code)


@app.command()
def run(config: ConfigOption = None) -> None:
    """Run the bot: scheduler, market data, and every platform that has a token.

    With no tokens it runs on the console: type commands such as `/watch NVDA` on stdin.
    """
    settings = _settings(config)
    from bot.leadership import RunRefused
    from bot.runner import run_bot

    try:
        asyncio.run(run_bot(settings))
    except KeyboardInterrupt:
        typer.echo("marketbot: stopped")
    except RunRefused as exc:
        raise _fail(str(exc)) from None


@app.command()
def worker(config: ConfigOption = None) -> None:
    """Only deliver: drain the PostgreSQL outbox to Slack and Discord (any number may run).

    Needs PostgreSQL and a Slack or Discord token; the leading `marketbot run` does the rest.
    """
    settings = _settings(config)
    from bot.leadership import RunRefused
    from bot.worker import check_worker_settings, run_worker

    try:
        check_worker_settings(settings)
        asyncio.run(run_worker(settings))
    except KeyboardInterrupt:
        typer.echo("marketbot: stopped")
    except RunRefused as exc:
        raise _fail(str(exc)) from None


@app.command()
def replay(
    scenario: Annotated[str, typer.Argument(help="A built-in scenario name or a scenario file.")],
    speed: Annotated[
        float | None,
        typer.Option(help="Play at N times real speed (default: as fast as possible).", min=0.001),
    ] = None,
    cmd: Annotated[
        list[str] | None,
        typer.Option(
            "--cmd", help='A command to run first, e.g. "/watch NVDA drop 10%" (repeatable).'
        ),
    ] = None,
    render: Annotated[
        str, typer.Option(help="How to show messages: console, slack (Block Kit JSON) or discord.")
    ] = "console",
    db: Annotated[
        str | None,
        typer.Option(
            "--db",
            help="Continue from this database URL (e.g. sqlite:///day1.db) instead of a "
            "throw-away one: watches, rule states and sent digests carry over.",
        ),
    ] = None,
    charts: Annotated[
        Path | None,
        typer.Option(
            "--charts",
            metavar="DIR",
            help="Write the chart PNG each message would carry (alerts, digests) into DIR.",
        ),
    ] = None,
    config: ConfigOption = None,
) -> None:
    """Play a recorded market day through the real pipeline into the console.

    With --render slack or discord, stdout is one JSON object per line (pipe it to jq); the
    progress, command replies and summary go to stderr.
    """
    if render not in ("console", "slack", "discord"):
        raise _fail(f"--render must be console, slack or discord, not {render!r}")
    settings = _settings(config)
    if charts is not None:
        try:
            charts.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise _fail(f"--charts: cannot create {charts}: {exc.strerror or exc}") from None
    import sys

    from rich.console import Console

    from bot.replay import ReplayError, run_replay

    kind = _render_kind(render)
    try:
        asyncio.run(
            run_replay(
                settings,
                scenario,
                speed=speed,
                commands=cmd or [],
                render=kind,
                # JSON payloads own stdout, so everything said around them goes to stderr.
                console=Console(stderr=True) if kind != "console" else None,
                payloads=sys.stdout if kind != "console" else None,
                database_url=db,
                charts_dir=charts,
            )
        )
    except ReplayError as exc:
        raise _fail(str(exc)) from None


def _render_kind(value: str) -> Literal["console", "slack", "discord"]:
    if value == "slack":
        return "slack"
    if value == "discord":
        return "discord"
    return "console"


@app.command()
def backtest(
    target: Annotated[str, typer.Argument(help="The symbol, e.g. NVDA.")],
    rule: Annotated[
        list[str], typer.Argument(help="The rule, e.g. drop 10% (quoting it is optional).")
    ],
    start: Annotated[str, typer.Option(help="First day, YYYY-MM-DD.")],
    end: Annotated[
        str | None,
        typer.Option(help="Last day, YYYY-MM-DD (default: today on the symbol's exchange)."),
    ] = None,
    chart: Annotated[
        Path | None, typer.Option(help="Also write a PNG of the price with the firing points.")
    ] = None,
    config: ConfigOption = None,
) -> None:
    """Would this rule have fired? The real engine over Yahoo's history (cached on disk).

    1-minute bars with pre/post-market for the last 30 days, coarser bars further back.
    """
    from datetime import date

    def day(value: str, flag: str) -> date:
        try:
            return date.fromisoformat(value)
        except ValueError:
            raise _fail(f"{flag} must be a date as YYYY-MM-DD, not {value!r}") from None

    first = day(start, "--start")
    # No --end: today where the symbol trades (run_backtest), as --start and --end are counted.
    last = day(end, "--end") if end is not None else None
    settings = _settings(config)
    from bot.backtest import BacktestError, run_backtest
    from bot.logs import configure_logging, secret_values

    # The firings and the notes on stderr are the report; yfinance's own lines ("$NVDA:
    # possibly delisted; no price data found") would only repeat the one-line refusal.
    configure_logging("ERROR", secrets=secret_values(settings))

    try:
        run_backtest(settings, target, " ".join(rule), first, last, chart=chart)
    except BacktestError as exc:
        raise _fail(str(exc)) from None


@app.command("cmd")
def command(
    text: Annotated[str, typer.Argument(help='The command, e.g. "/watch NVDA drop 10%".')],
    channel: Annotated[str, typer.Option(help="The channel it acts on.")] = "console:default",
    config: ConfigOption = None,
) -> None:
    """Run one command against the store, as if typed in a channel."""
    settings = _settings(config)
    from alerts.commands import CommandContext
    from alerts.ports import SystemClock
    from bot.database import open_store
    from bot.market.symbol_check import YahooSymbolCheck
    from bot.news.store import NewsStore
    from bot.news.view import StoredNews
    from bot.runner import build_router

    store = open_store(settings)
    # A new symbol is asked of Yahoo as in the running bot, which only reads what this writes:
    # a typo accepted here would be watched there and never alert.
    symbols = YahooSymbolCheck(clock=SystemClock(), base_url=settings.yahoo.base_url)
    try:
        # `/news` answers from the stored headlines the running bot has collected.
        router = build_router(
            store, settings, market=StoredNews(NewsStore(store.engine)), symbols=symbols
        )
        reply = router.handle(text, CommandContext(channel=channel, user="cli", platform="console"))
    finally:
        symbols.close()
        store.close()
    from rich.console import Console

    from bot.render.console import render_reply

    # Drawn as the console draws replies (bold, code) instead of printing Slack's asterisks and
    # backticks; piped, plain text with its own line breaks only.
    Console(soft_wrap=True).print(render_reply(reply.text, ok=reply.ok), highlight=False)
    if not reply.ok:
        raise typer.Exit(1)


@db_app.command("upgrade")
def db_upgrade(config: ConfigOption = None) -> None:
    """Apply every pending database migration."""
    settings = _settings(config)
    from bot.database import open_store

    store = open_store(settings)
    try:
        typer.echo(f"database at revision {store.current_revision()}")
    finally:
        store.close()


@app.command()
def doctor(config: ConfigOption = None) -> None:
    """Check settings, database, Slack, Discord, Yahoo and news feeds; say how to fix failures.

    Exits 0 only when every check passes (a platform without a token is skipped, not failed).
    Nothing is changed: no migration is applied, no message is sent.
    """
    settings = _settings(config)
    from rich.console import Console

    from bot.doctor import findings_table, run_checks
    from bot.logs import configure_logging, secret_values

    # The table is the report; library warnings would only interleave with it.
    configure_logging("ERROR", secrets=secret_values(settings))
    findings = asyncio.run(run_checks(settings))
    console = Console()
    console.print(findings_table(findings))
    failed = [f for f in findings if f.failed]
    if failed:
        noun = "check" if len(failed) == 1 else "checks"
        console.print(f"[bold red]{len(failed)} {noun} failed[/]: the fix column says what to do.")
        raise typer.Exit(1)
    console.print("[green]all checks passed[/]")


@app.command("slack-manifest")
def slack_manifest(
    prefix: Annotated[
        str,
        typer.Option(
            help="Command prefix, e.g. mb- for /mb-watch (lowercase a-z 0-9 - _).",
            envvar=["MARKETBOT_SLACK__COMMAND_PREFIX", "MARKETBOT_SLACK_COMMAND_PREFIX"],
        ),
    ] = "",
    name: Annotated[str, typer.Option(help="The app's display name.")] = "marketbot",
    http: Annotated[
        str | None,
        typer.Option(
            "--http",
            metavar="URL",
            help="HTTP mode: Slack posts commands, events and interactivity to this https URL "
            "(the bot serves /slack/events). Default: Socket Mode.",
        ),
    ] = None,
) -> None:
    """Print a Slack app manifest (JSON) to paste into "Create app from manifest"."""
    from alerts.commands import COMMANDS
    from bot.slack.commands import UMBRELLA, CommandNameError, unregistered
    from bot.slack.manifest import build_manifest, manifest_json

    try:
        manifest = build_manifest(command_prefix=prefix, app_name=name, request_url=http)
    except CommandNameError as exc:
        raise _fail(str(exc)) from None
    typer.echo(manifest_json(manifest))
    # stdout stays pure JSON (pipe it to a file); the note goes to stderr.
    only_umbrella = unregistered(prefix, COMMANDS)
    if only_umbrella:
        names = ", ".join(only_umbrella)
        typer.echo(
            f"note: {names} are not registered as top-level commands (Slack's own or too "
            f"generic); use /{prefix}{UMBRELLA} {only_umbrella[0]} ...",
            err=True,
        )


@app.command("discord-invite")
def discord_invite(
    client_id: Annotated[str, typer.Argument(help="Your Discord application's client id.")],
) -> None:
    """Print the OAuth2 URL that adds the bot to a server with exactly the permissions it needs."""
    from bot.discord.invite import invite_url

    try:
        typer.echo(invite_url(client_id))
    except ValueError as exc:
        raise _fail(str(exc)) from None


def main() -> None:
    """Typer's own exit codes (2 for usage errors, as for invalid settings); everything else that
    goes wrong is one line on stderr and exit code 1, the traceback only with ``--debug``."""
    from bot.database import DatabaseUnavailable

    try:
        app(prog_name="marketbot")
    except DatabaseUnavailable as exc:
        _exit_on(exc, str(exc))
    except Exception as exc:
        _exit_on(exc, f"unexpected error: {type(exc).__name__}: {exc}".splitlines()[0])


def _exit_on(exc: Exception, line: str) -> None:
    if _Options.debug:
        raise exc
    typer.echo(f"marketbot: {line} (--debug shows the traceback)", err=True)
    raise SystemExit(1) from None


if __name__ == "__main__":
    main()
