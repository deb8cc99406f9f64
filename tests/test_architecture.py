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
