"""The built-in replay scenarios, and finding and reading a scenario by name or file path."""

from __future__ import annotations

import json
from pathlib import Path

from alerts.scenario import Scenario, ScenarioError, load_scenario

_HERE = Path(__file__).resolve().parent
_SUFFIX = ".json"


class UnknownScenarioError(LookupError):
    """Neither a built-in scenario name nor an existing file; the message lists the built-ins."""


def builtin_scenarios() -> list[str]:
    """Names of the scenarios shipped with marketbot, sorted."""
    return sorted(p.stem for p in _HERE.glob(f"*{_SUFFIX}"))


def resolve_scenario(name_or_path: str) -> Path:
    """The file behind a built-in name (``deepseek-2025-01-27``) or a path to a scenario file.

    An existing file wins over a built-in of the same name, so a user's copy can be replayed
    from the directory it sits in.
    """
    candidate = Path(name_or_path).expanduser()
    if candidate.is_file():
        return candidate
    name = name_or_path.removesuffix(_SUFFIX)
    if name in builtin_scenarios():
        return _HERE / f"{name}{_SUFFIX}"
    names = ", ".join(builtin_scenarios()) or "(none)"
    hint = "no such file" if candidate.suffix or "/" in name_or_path else "no such built-in"
    raise UnknownScenarioError(
        f"scenario {name_or_path!r} not found ({hint}); built-in scenarios: {names}"
    )


def read_scenario(path: Path) -> Scenario:
    """Parse and validate a scenario file; errors name the file and the offending field."""
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise ScenarioError(f"{path}: cannot read: {exc.strerror or exc}") from None
    except UnicodeDecodeError:
        raise ScenarioError(f"{path}: not UTF-8 text") from None
    except json.JSONDecodeError as exc:
        raise ScenarioError(
            f"{path}: not valid JSON (line {exc.lineno}, column {exc.colno}: {exc.msg})"
        ) from None
    if not isinstance(data, dict):
        raise ScenarioError(f"{path}: a scenario is a JSON object at the top level")
    try:
        return load_scenario(data)
    except ScenarioError as exc:
        raise ScenarioError(f"{path.name}: {exc}") from None


def open_scenario(name_or_path: str) -> Scenario:
    """``resolve_scenario`` then ``read_scenario``: what ``marketbot replay SCENARIO`` needs."""
    return read_scenario(resolve_scenario(name_or_path))
