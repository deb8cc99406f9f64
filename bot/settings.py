"""marketbot's configuration: environment (MARKETBOT_*), an optional TOML/JSON file, defaults."""

from __future__ import annotations

import json
import tomllib
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import BaseModel, Field, SecretStr, ValidationError, field_validator
from pydantic_settings import BaseSettings, NoDecode, PydanticBaseSettingsSource, SettingsConfigDict

ENV_PREFIX = "MARKETBOT_"


class SlackSettings(BaseModel):
    bot_token: SecretStr | None = None
    app_token: SecretStr | None = None  # Socket Mode (no public URL needed)
    signing_secret: SecretStr | None = None  # HTTP mode
    mode: Literal["socket", "http"] = "socket"
    http_port: int = Field(default=3000, ge=1, le=65535)
    api_url: str | None = None  # Web API base URL (GovSlack, tests)
    command_prefix: str = ""  # "mb-" turns /watch into /mb-watch

    @field_validator("command_prefix")
    @classmethod
    def _slack_accepts_prefix(cls, value: str) -> str:
        from bot.slack.commands import validate_prefix

        return validate_prefix(value)

    @property
    def enabled(self) -> bool:
        return self.bot_token is not None


class DiscordSettings(BaseModel):
    token: SecretStr | None = None
    api_url: str | None = None
    gateway_url: str | None = None
    dev_guild_id: int | None = None
    manage_role: str | None = None  # a role that may change watches besides Manage Channels
    shard_count: int | None = Field(default=None, ge=1)

    @property
    def enabled(self) -> bool:
        return self.token is not None


class YahooSettings(BaseModel):
    base_url: str | None = None  # mirror / fake: https://HOST/PATH becomes {base_url}/HOST/PATH
    stream_url: str = "wss://streamer.finance.yahoo.com/?version=2"
    stream_enabled: bool = True
    poll_interval_seconds: float = Field(default=15.0, gt=0)
    timeout_seconds: float = Field(default=10.0, gt=0)


class NewsSettings(BaseModel):
    """RSS/Atom headlines polled on the scheduler, stored, tagged and attached to alerts."""

    enabled: bool = True
    # Yahoo Finance headlines for every watched symbol, many symbols per request.
    yahoo_headlines: bool = True
    # Feeds besides Yahoo's per-symbol ones; ``default_feeds = false`` makes them replace
    # the built-in general market feeds instead of adding to them.
    # NoDecode: the environment may spell it "URL,URL" as well as a JSON list.
    feeds: Annotated[list[str], NoDecode] = Field(default_factory=list)
    default_feeds: bool = True
    poll_interval_seconds: float = Field(default=120.0, gt=0)
    timeout_seconds: float = Field(default=10.0, gt=0)
    max_bytes: int = Field(default=2_000_000, ge=1024)  # a bigger body is refused, not parsed
    yahoo_batch_size: int = Field(default=60, ge=1, le=100)  # symbols per Yahoo feed request

    @field_validator("feeds", mode="before")
    @classmethod
    def _comma_list(cls, value: object) -> object:
        # "https://a/rss,https://b/atom" as typed in an env file, besides a JSON list.
        if isinstance(value, str):
            if value.lstrip().startswith("["):
                return json.loads(value)
            return [part.strip() for part in value.split(",") if part.strip()]
        return value

    @field_validator("feeds")
    @classmethod
    def _http_urls(cls, value: list[str]) -> list[str]:
        for url in value:
            if not url.startswith(("http://", "https://")):
                raise ValueError(f"a feed must be an http(s) URL, got {url!r}")
        return value


class AlertSettings(BaseModel):
    default_rule: str = "drop 10%"
    hysteresis_pct: float = Field(default=2.0, ge=0)
    escalation_step_pct: float = Field(default=5.0, gt=0)
    group_wait_seconds: float = Field(default=2.0, ge=0)
    group_interval_seconds: float = Field(default=60.0, ge=0)
    context_symbols: list[str] = Field(default_factory=lambda: ["NQ=F", "ES=F", "YM=F"])
    charts: bool = True  # a chart image under each new alert message (Slack, Discord)
    resolved_notices: bool = False  # default for channels that did not say `/resolved on|off`
    repeat_interval_minutes: float | None = Field(default=None, gt=0)  # None: never repeat
    cooldown_minutes: float = Field(default=0.0, ge=0)  # after a fire, a new crossing waits
    # Relative moves on every price alert: Nasdaq listings against benchmark_nasdaq, the rest
    # against benchmark_other ("" switches one off); benchmarks names a symbol's own, as JSON
    # ({"ASML.AS": "^AEX"}).
    benchmark_nasdaq: str = "NQ=F"
    benchmark_other: str = "ES=F"
    benchmarks: dict[str, str] = Field(default_factory=dict)


class DeliverySettings(BaseModel):
    # A claimed outbox row is another worker's to reconcile after this long without renewal.
    lease_seconds: float = Field(default=30.0, gt=0)
    # Delivery wakes on each committed row; this slow poll is only the safety net.
    poll_seconds: float = Field(default=5.0, gt=0)


class Settings(BaseSettings):
    """Every setting has a documented default in config/marketbot.example.toml."""

    model_config = SettingsConfigDict(
        env_prefix=ENV_PREFIX,
        env_nested_delimiter="__",
        extra="forbid",
        validate_default=True,
    )

    database_url: str = "sqlite:///marketbot.db"
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"
    log_format: Literal["text", "json"] = "text"  # json: one object per line (log shippers)
    console: bool = True  # the terminal channel console:default
    timezone: str = "America/New_York"  # how times are shown
    digest_time: str = "08:00"  # daily premarket digest, in `timezone`, trading days only
    metrics_port: int | None = Field(default=None, ge=0, le=65535)  # 0: any free port
    metrics_addr: str = "0.0.0.0"
    cache_dir: str | None = None  # backtest history; default $XDG_CACHE_HOME/marketbot
    slack: SlackSettings = Field(default_factory=SlackSettings)
    discord: DiscordSettings = Field(default_factory=DiscordSettings)
    yahoo: YahooSettings = Field(default_factory=YahooSettings)
    alerts: AlertSettings = Field(default_factory=AlertSettings)
    delivery: DeliverySettings = Field(default_factory=DeliverySettings)
    news: NewsSettings = Field(default_factory=NewsSettings)

    @field_validator("database_url")
    @classmethod
    def _usable_database_url(cls, value: str) -> str:
        from bot.database import check_database_url

        return check_database_url(value)

    @field_validator("digest_time")
    @classmethod
    def _hh_mm(cls, value: str) -> str:
        hours, sep, minutes = value.partition(":")
        if not (sep and hours.isdigit() and minutes.isdigit()):
            raise ValueError("expected HH:MM, for example 08:00")
        if not (0 <= int(hours) < 24 and 0 <= int(minutes) < 60):
            raise ValueError("expected HH:MM within a day, for example 08:00")
        return f"{int(hours):02d}:{int(minutes):02d}"

    @field_validator("timezone")
    @classmethod
    def _known_zone(cls, value: str) -> str:
        from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

        try:
            ZoneInfo(value)
        except (ZoneInfoNotFoundError, ValueError) as exc:
            raise ValueError("unknown time zone, for example America/New_York") from exc
        return value


class SettingsError(Exception):
    """A setting is invalid; the message names it and says what is wrong, in one line."""


SECRET_FIELDS = {
    ("slack", "bot_token"),
    ("slack", "app_token"),
    ("slack", "signing_secret"),
    ("discord", "token"),
}


def _read_file(path: Path) -> dict[str, Any]:
    if not path.is_file():
        raise SettingsError(f"--config: no such file: {path}")
    text = path.read_text(encoding="utf-8")
    try:
        if path.suffix == ".toml":
            data: object = tomllib.loads(text)
        elif path.suffix == ".json":
            data = json.loads(text)
        else:
            raise SettingsError(f"--config: {path} must end in .toml or .json")
    except (tomllib.TOMLDecodeError, json.JSONDecodeError) as exc:
        kind = path.suffix[1:].upper()
        raise SettingsError(f"--config: {path} is not valid {kind}: {exc}") from exc
    if not isinstance(data, dict):
        raise SettingsError(f"--config: {path} must hold a table of settings")
    for section, key in SECRET_FIELDS:
        nested = data.get(section)
        if isinstance(nested, dict) and key in nested:
            name = f"{ENV_PREFIX}{section.upper()}__{key.upper()}"
            raise SettingsError(
                f"--config: {path} sets {section}.{key}; secrets come only from the environment "
                f"({name})"
            )
    return data


class _FileSource(PydanticBaseSettingsSource):
    """Values from --config, ranked below the environment."""

    def __init__(self, settings_cls: type[BaseSettings], values: dict[str, Any]) -> None:
        super().__init__(settings_cls)
        self._values = values

    def get_field_value(self, field: Any, field_name: str) -> tuple[Any, str, bool]:
        return self._values.get(field_name), field_name, False

    def __call__(self) -> dict[str, Any]:
        return dict(self._values)


SECTIONS: dict[str, type[BaseModel]] = {
    "slack": SlackSettings,
    "discord": DiscordSettings,
    "yahoo": YahooSettings,
    "alerts": AlertSettings,
    "news": NewsSettings,
    "delivery": DeliverySettings,
}


class _FlatEnvSource(PydanticBaseSettingsSource):
    """Also accepts the single-underscore spelling, ``MARKETBOT_SLACK_BOT_TOKEN``.

    The canonical form nests with ``__`` (``MARKETBOT_SLACK__BOT_TOKEN``), but the flat form is
    what people type from the docs of most bots; both work, and the ``__`` form wins.
    """

    def get_field_value(self, field: Any, field_name: str) -> tuple[Any, str, bool]:
        return None, field_name, False

    def __call__(self) -> dict[str, Any]:
        import os

        found: dict[str, Any] = {}
        for section, model in SECTIONS.items():
            for name in model.model_fields:
                value = os.environ.get(f"{ENV_PREFIX}{section}_{name}".upper())
                if value is not None:
                    found.setdefault(section, {})[name] = _maybe_json(value)
        return found


def _maybe_json(value: str) -> Any:
    # Lists such as CONTEXT_SYMBOLS (and maps such as BENCHMARKS) come as JSON, as
    # pydantic-settings reads them when nested.
    if value.startswith(("[", "{")):
        try:
            return json.loads(value)
        except json.JSONDecodeError:
            return value
    return value


def load_settings(config_file: Path | None = None) -> Settings:
    """Environment beats the file, the file beats defaults. Raises SettingsError on bad input."""
    file_values = _read_file(config_file) if config_file else {}

    class SettingsWithFile(Settings):
        @classmethod
        def settings_customise_sources(
            cls,
            settings_cls: type[BaseSettings],
            init_settings: PydanticBaseSettingsSource,
            env_settings: PydanticBaseSettingsSource,
            dotenv_settings: PydanticBaseSettingsSource,
            file_secret_settings: PydanticBaseSettingsSource,
        ) -> tuple[PydanticBaseSettingsSource, ...]:
            return (
                init_settings,
                env_settings,
                _FlatEnvSource(settings_cls),
                _FileSource(settings_cls, file_values),
            )

    try:
        loaded = SettingsWithFile()
    except ValidationError as exc:
        raise SettingsError(describe_validation_error(exc)) from None
    # Hand out the plain class: model_validate does not read the environment again.
    return Settings.model_validate(dict(loaded))


def describe_validation_error(exc: ValidationError) -> str:
    first = exc.errors()[0]
    name = ENV_PREFIX + "__".join(str(part) for part in first["loc"]).upper()
    message = first["msg"]
    if first["type"] == "extra_forbidden":
        message = "unknown setting"
    more = len(exc.errors()) - 1
    suffix = f" (and {more} more)" if more else ""
    return f"invalid setting {name}: {message}{suffix}"
