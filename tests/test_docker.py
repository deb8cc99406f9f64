"""The image and the compose stack, checked without a Docker daemon or a registry.

`.ci/run` also lints the Dockerfile with hadolint and installs the built wheel in a fresh venv;
here compose.yaml is validated by `docker-compose config` where Debian's docker-compose is
installed, and its structure is always checked with PyYAML.
"""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parents[1]


def _compose() -> dict[str, Any]:
    yaml = pytest.importorskip("yaml", reason="PyYAML not installed")
    loaded = yaml.safe_load((ROOT / "compose.yaml").read_text(encoding="utf-8"))
    assert isinstance(loaded, dict)
    return loaded


def _instructions() -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) of the Dockerfile, continuation lines joined."""
    text = (ROOT / "Dockerfile").read_text(encoding="utf-8").replace("\\\n", " ")
    found = []
    for line in text.splitlines():
        stripped = line.strip()
        if stripped and not stripped.startswith("#"):
            keyword, _, rest = stripped.partition(" ")
            found.append((keyword.upper(), rest.strip()))
    return found


def test_dockerfile_is_multi_stage_with_dependencies_in_their_own_layer() -> None:
    steps = _instructions()
    froms = [i for i, (kw, _) in enumerate(steps) if kw == "FROM"]
    assert len(froms) == 2
    build = steps[froms[0] : froms[1]]
    copies = [args for kw, args in build if kw == "COPY"]
    runs = [args for kw, args in build if kw == "RUN"]
    # pyproject.toml alone first, the dependency install, only then the source.
    assert copies[0] == "pyproject.toml ./"
    install_deps = next(
        i for i, (kw, a) in enumerate(build) if kw == "RUN" and "-r requirements" in a
    )
    first_source = next(i for i, (kw, a) in enumerate(build) if kw == "COPY" and "bot" in a)
    assert install_deps < first_source
    assert any("--no-deps ." in args for args in runs)


def test_runtime_stage_is_non_root_with_a_healthcheck_on_healthz() -> None:
    steps = _instructions()
    last_from = max(i for i, (kw, _) in enumerate(steps) if kw == "FROM")
    runtime = steps[last_from:]
    users = [args for kw, args in runtime if kw == "USER"]
    assert users
    assert users[-1].split(":")[0] not in ("root", "0")
    [health] = [args for kw, args in runtime if kw == "HEALTHCHECK"]
    assert "/healthz" in health
    assert any(kw == "COPY" and args.startswith("--from=build") for kw, args in runtime)
    env = " ".join(args for kw, args in runtime if kw == "ENV")
    assert "MARKETBOT_METRICS_PORT=" in env  # /healthz is served on that port


def test_dockerignore_keeps_secrets_and_local_state_out() -> None:
    ignored = set((ROOT / ".dockerignore").read_text(encoding="utf-8").split())
    assert {".git", ".venv", ".env", "*.db", "tests"} <= ignored
    # ...but never what the build copies.
    assert not {"pyproject.toml", "bot", "alerts", "README.md"} & ignored


def test_compose_has_postgres_the_bot_and_a_worker() -> None:
    services = _compose()["services"]
    assert set(services) == {"db", "bot", "worker"}
    assert services["db"]["image"].startswith("postgres:")
    assert "pg_isready" in " ".join(services["db"]["healthcheck"]["test"])
    for name, command in (("bot", ["run"]), ("worker", ["worker"])):
        service = services[name]
        assert service["command"] == command
        assert service["build"] == "."
        url = service["environment"]["MARKETBOT_DATABASE_URL"]
        assert url.startswith("postgresql+psycopg://")
        assert "@db:5432/" in url
        assert service["depends_on"]["db"]["condition"] == "service_healthy"
        assert service["env_file"] == ".env"  # secrets from the file, not from compose.yaml
    assert any("9464" in port for port in services["bot"]["ports"])


@pytest.mark.skipif(shutil.which("docker-compose") is None, reason="docker-compose not installed")
def test_docker_compose_config_accepts_the_file(tmp_path: Path) -> None:
    (tmp_path / ".env").write_text("MARKETBOT_SLACK__BOT_TOKEN=xoxb-example\n", encoding="utf-8")
    result = subprocess.run(
        [
            "docker-compose",
            "-f",
            str(ROOT / "compose.yaml"),
            "--project-directory",
            str(tmp_path),
            "config",
            "-q",
        ],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stderr
