"""Runs every benchmark script in this folder (or those named) and prints their figures.

Usage: python benchmarks/run.py [NAME ...]   e.g. python benchmarks/run.py startup engine
Each script prints its figure and the ratio against a baseline measured in the same run.
"""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent


def scripts(names: list[str]) -> list[Path]:
    found = sorted(
        p for p in HERE.glob("*.py") if p.name != "run.py" and not p.name.startswith("_")
    )
    if not names:
        return found
    chosen = [p for p in found if any(name in p.stem for name in names)]
    missing = [n for n in names if not any(n in p.stem for p in found)]
    if missing:
        raise SystemExit(f"no benchmark matches {missing}; have: {[p.stem for p in found]}")
    return chosen


def main(argv: list[str]) -> int:
    failed = 0
    for script in scripts(argv):
        print(f"== {script.stem}", flush=True)
        started = time.perf_counter()
        result = subprocess.run([sys.executable, str(script)], cwd=HERE.parent, check=False)
        print(f"   ({time.perf_counter() - started:.1f} s wall)\n", flush=True)
        failed += result.returncode != 0
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
