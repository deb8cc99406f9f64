"""The core stays pure: nothing under alerts/ imports an SDK, a database driver or the network."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
FORBIDDEN = {
    "discord",
    "slack_bolt",
    "slack_sdk",
    "yfinance",
    "sqlalchemy",
    "alembic",
    "apscheduler",
    "aiohttp",
    "websockets",
    "requests",
    "curl_cffi",
    "feedparser",
    "matplotlib",
    "pandas",
    "exchange_calendars",
    "prometheus_client",
    "rich",
    "typer",
    "bot",
}


def _imports(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module.split(".")[0])
    return names


CORE_FILES = sorted((ROOT / "alerts").rglob("*.py"))


@pytest.mark.parametrize("path", CORE_FILES, ids=lambda p: str(p.relative_to(ROOT)))
def test_core_module_imports_no_sdk(path: Path) -> None:
    bad = _imports(path) & FORBIDDEN
    assert not bad, f"{path.relative_to(ROOT)} imports {sorted(bad)}; alerts/ must stay pure"


def test_the_rule_sees_a_violation(tmp_path: Path) -> None:
    sample = tmp_path / "sample.py"
    sample.write_text("import os\nfrom slack_sdk import WebClient\nimport discord.http\n")
    assert _imports(sample) & FORBIDDEN == {"slack_sdk", "discord"}


def test_only_the_scheduler_module_imports_apscheduler() -> None:
    importers = [
        path.relative_to(ROOT).as_posix()
        for path in sorted((ROOT / "bot").rglob("*.py"))
        if "apscheduler" in _imports(path)
    ]
    assert importers == ["bot/scheduler.py"]


def test_importing_the_core_loads_no_sdk() -> None:
    code = (
        "import sys, alerts.engine, alerts.commands, alerts.compose, alerts.grouping;"
        f"bad = sorted(m for m in sys.modules if m.split('.')[0] in {sorted(FORBIDDEN)!r});"
        "print(','.join(bad))"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=ROOT
    )
    assert out.stdout.strip() == ""


def test_help_imports_neither_pandas_yfinance_nor_discord() -> None:
    code = (
        "import sys\n"
        "from typer.testing import CliRunner\n"
        "from bot.cli import app\n"
        "result = CliRunner().invoke(app, ['--help'])\n"
        "assert result.exit_code == 0, result.output\n"
        "print(','.join(sorted(m for m in ('pandas', 'yfinance', 'discord', 'slack_bolt', "
        "'sqlalchemy', 'matplotlib') if m in sys.modules)))\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=ROOT
    )
    assert out.stdout.strip() == ""


# Adapters are translations: each talks to the core and to its own SDK, never to another
# adapter, and market data never reaches up into the pipeline that consumes it.
ADAPTERS = ("bot.slack", "bot.discord", "bot.console", "bot.market")
PIPELINE = ("bot.pipeline", "bot.delivery", "bot.ingest", "bot.runner", "bot.replay", "bot.cli")


def _qualified_imports(path: Path) -> set[str]:
    """Full dotted names imported by a module (``from bot.slack.app import X`` ->
    ``bot.slack.app``); relative imports resolved against the module's package."""
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    inside = path.is_relative_to(ROOT)
    package = path.relative_to(ROOT).with_suffix("").parts[:-1] if inside else ()
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parent = package[: len(package) - node.level + 1]
                base = ".".join([*parent, base] if base else parent)
            names.add(base)
            # ``from bot import pipeline`` imports the module bot.pipeline.
            names.update(f"{base}.{alias.name}" for alias in node.names)
    return names


def _adapter_of(module: str) -> str | None:
    return next((a for a in ADAPTERS if module == a or module.startswith(a + ".")), None)


def _adapter_files() -> list[tuple[str, Path]]:
    files: list[tuple[str, Path]] = []
    for adapter in ADAPTERS:
        base = ROOT.joinpath(*adapter.split("."))
        found = sorted(base.rglob("*.py")) if base.is_dir() else [base.with_suffix(".py")]
        files += [(adapter, p) for p in found if p.exists()]
    return files


@pytest.mark.parametrize(
    ("adapter", "path"),
    [pytest.param(a, p, id=p.relative_to(ROOT).as_posix()) for a, p in _adapter_files()],
)
def test_adapters_import_no_other_adapter_and_no_pipeline(adapter: str, path: Path) -> None:
    rel = path.relative_to(ROOT).as_posix()
    crossing = sorted(
        m
        for m in _qualified_imports(path)
        if (other := _adapter_of(m)) is not None and other != adapter
    )
    assert not crossing, f"{rel} imports another adapter: {crossing}"
    if adapter == "bot.market":
        upward = sorted(
            m
            for m in _qualified_imports(path)
            if any(m == p or m.startswith(p + ".") for p in PIPELINE)
        )
        assert not upward, f"{rel} imports the pipeline: {upward}"


def test_the_adapter_rule_sees_a_violation(tmp_path: Path) -> None:
    sample = tmp_path / "sample.py"
    sample.write_text("from bot.slack.app import CommandHandler\nimport bot.pipeline\n")
    found = _qualified_imports(sample)
    assert _adapter_of("bot.slack.app") == "bot.slack"
    assert {"bot.slack.app", "bot.pipeline"} <= found


# Platform syntax is the adapter's: the core never reads or writes Discord's mention tokens
# (roles <@&1>, users <@1>, channels <#1>). Docstrings may name them; code may not.
PLATFORM_SYNTAX = ("<@", "<#")


def _code_strings(path: Path) -> list[tuple[int, str]]:
    """String literals of a module that are not docstrings, with their line numbers."""
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    docstrings: set[int] = set()
    for node in ast.walk(tree):
        if isinstance(node, (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)):
            first = node.body[0] if node.body else None
            if isinstance(first, ast.Expr) and isinstance(first.value, ast.Constant):
                docstrings.add(id(first.value))
    return [
        (node.lineno, node.value)
        for node in ast.walk(tree)
        if isinstance(node, ast.Constant)
        and isinstance(node.value, str)
        and id(node) not in docstrings
    ]


@pytest.mark.parametrize("path", CORE_FILES, ids=lambda p: str(p.relative_to(ROOT)))
def test_core_holds_no_platform_mention_syntax(path: Path) -> None:
    found = [
        f"line {line}: {text!r}"
        for line, text in _code_strings(path)
        if any(token in text for token in PLATFORM_SYNTAX)
    ]
    assert not found, f"{path.relative_to(ROOT)} parses a platform's syntax: {found}"


def test_the_syntax_rule_sees_a_violation(tmp_path: Path) -> None:
    sample = tmp_path / "sample.py"
    sample.write_text(
        '"""Mentions look like <@&1>."""\nimport re\n_ROLE = re.compile(r"<@&(\\d+)>")\n'
    )
    assert [line for line, text in _code_strings(sample) if "<@" in text] == [3]
