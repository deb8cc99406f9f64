"""Package metadata: what the wheel says about itself (built by `.ci/run` and the Dockerfile)."""

from __future__ import annotations

import re
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def _pyproject() -> dict[str, object]:
    return tomllib.loads((ROOT / "pyproject.toml").read_text())


def test_the_license_is_an_spdx_expression_with_its_file() -> None:
    # setuptools deprecates the `license = {text = ...}` table (a SetuptoolsDeprecationWarning
    # on every build, an error from 2027-02-18); the SPDX string needs setuptools >= 77.
    doc = _pyproject()
    project = doc["project"]
    assert isinstance(project, dict)
    assert project["license"] == "MIT"
    assert project["license-files"] == ["LICENSE"]
    assert (ROOT / "LICENSE").read_text().startswith("MIT License")
    # A "License ::" classifier beside a license expression is refused by setuptools.
    classifiers = project.get("classifiers", [])
    assert isinstance(classifiers, list)
    assert not [c for c in classifiers if c.startswith("License ::")]
    build = doc["build-system"]
    assert isinstance(build, dict)
    [setuptools] = [r for r in build["requires"] if r.startswith("setuptools")]
    floor = re.fullmatch(r"setuptools>=(\d+)(\.\d+)*", setuptools)
    assert floor is not None, setuptools
    assert int(floor.group(1)) >= 77, setuptools
