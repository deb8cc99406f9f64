"""Engine throughput: 1,000,000 rules over 5,000 symbols, a tick batch where 1% of symbols move.

Measures the indexed engine and, in the same run, the naive baseline (every rule evaluated on
every batch: ``benchmarks/naive_engine.py``) on identical watches and quotes.
Targets: >= 100x faster than the baseline and < 100 ms per batch.

With ``--baseline REV`` the same run also measures the indexed engine as it was at git
revision REV (``pre-split``: the commit before the engine became ``alerts/engine/``): its
``alerts`` package is taken from git into a temporary folder and imported by a subprocess
of this script, which builds the same watches and quotes. ``--repeat K`` measures the two
indexed engines K times each, alternating, to show the spread on a shared machine. Each
batch is timed in wall time and in the process's CPU time (less sensitive to other load).

Run: .venv/bin/python benchmarks/bench_engine.py [--rules N] [--symbols N]
         [--baseline pre-split] [--repeat K] [--no-naive]
"""

from __future__ import annotations

import argparse
import functools
import gc
import json
import os
import random
import statistics
import subprocess
import sys
import tarfile
import tempfile
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from io import BytesIO
from pathlib import Path
from typing import Any, TypeVar, cast

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
# The --baseline subprocess puts an older ``alerts`` package ahead of this checkout's.
sys.path.insert(0, os.environ.get("MARKETBOT_BENCH_ENGINE_TREE") or sys.path[0])

from alerts.engine import Engine
from alerts.models import MarketSession, Quote, Watch

ROOT = Path(__file__).resolve().parents[1]
T = TypeVar("T")
TREE_ENV = "MARKETBOT_BENCH_ENGINE_TREE"

T0 = datetime(2025, 1, 27, 9, 0, tzinfo=UTC)
NAIVE_ROUNDS = 3
ROUNDS = 11
PREV = 100.0
# The last commit with the single-module engine (alerts/engine.py), before faccc16 split it.
PRE_SPLIT = "faccc16^"


def make_watches(n_rules: int, n_symbols: int, seed: int = 7) -> list[Watch]:
    rng = random.Random(seed)
    texts = (
        [f"drop {x}%" for x in range(1, 21)]
        + [f"rise {x}%" for x in range(1, 21)]
        + [f"move {x}%" for x in range(2, 21, 2)]
        + [f"above {p}" for p in range(101, 131)]
        + [f"below {p}" for p in range(70, 100)]
        + [f"drop {x}% from open" for x in range(1, 11)]
    )
    symbols = [f"S{i:04d}" for i in range(n_symbols)]
    return [
        Watch(i + 1, f"ch{i % 500}", symbols[i % n_symbols], rng.choice(texts), T0)
        for i in range(n_rules)
    ]


def batch(symbols: list[str], moved: set[str], minute: int, move_pct: float) -> list[Quote]:
    at = T0 + timedelta(minutes=minute)
    out = []
    for s in symbols:
        price = PREV * (1 + move_pct / 100) if s in moved else PREV * 1.001
        out.append(Quote(s, price, at, MarketSession.REGULAR, PREV, open=PREV))
    return out


class Timings:
    """Per-batch wall and CPU seconds, and the first batch's alert count."""

    def __init__(self, wall: list[float], cpu: list[float], first_alerts: int) -> None:
        self.wall, self.cpu, self.first_alerts = wall, cpu, first_alerts

    def to_json(self) -> str:
        return json.dumps({"wall": self.wall, "cpu": self.cpu, "alerts": self.first_alerts})

    @classmethod
    def from_json(cls, text: str) -> Timings:
        d = json.loads(text)
        return cls(d["wall"], d["cpu"], d["alerts"])


# Under callgrind (--instructions), instructions are counted only inside this C function of
# the interpreter, through which each timed batch is then called: the batches, not the set-up.
CALLGRIND_TOGGLE = "functools_reduce"


def _counted(evaluate: Callable[[list[Quote], datetime], T], *args: Any) -> T:
    """``evaluate(*args)``, called from inside CALLGRIND_TOGGLE."""
    return functools.reduce(lambda _, a: evaluate(*a), [args], cast(T, None))


def measure(
    indexed: bool, watches: list[Watch], n_symbols: int, rounds: int, *, counted: bool = False
) -> Timings:
    if indexed:
        engine = Engine()
    else:
        # Imported here: an older checkout measured by --baseline has no naive_engine.
        from benchmarks.naive_engine import NaiveEngine

        engine = NaiveEngine()
    engine.load(watches, [])
    symbols = [f"S{i:04d}" for i in range(n_symbols)]
    rng = random.Random(11)
    engine.on_quotes(batch(symbols, set(), 0, 0.0), T0)  # the quiet opening tick
    wall: list[float] = []
    cpu: list[float] = []
    alerts: list[int] = []
    for r in range(rounds):
        moved = set(rng.sample(symbols, max(1, n_symbols // 100)))
        quotes = batch(symbols, moved, r + 1, rng.choice([-6.0, -4.0, 4.0, 6.0]))
        gc.collect()
        at = T0 + timedelta(minutes=r + 1)
        started, started_cpu = time.perf_counter(), time.process_time()
        ev = _counted(engine.on_quotes, quotes, at) if counted else engine.on_quotes(quotes, at)
        cpu.append(time.process_time() - started_cpu)
        wall.append(time.perf_counter() - started)
        alerts.append(len(ev.alerts))
    del engine
    gc.collect()
    return Timings(wall, cpu, alerts[0])


def _indexed_child(
    rev: str | None,
    n_rules: int,
    n_symbols: int,
    rounds: int,
    *,
    instructions: bool = False,
    naive: bool = False,
) -> Timings | int:
    """This script's indexed measurement (with ``naive``: the naive baseline's) in a
    subprocess, with the ``alerts`` package of git revision ``rev`` (None: this checkout):
    Timings, or with ``instructions`` the number of instructions its batches executed under
    callgrind."""
    with tempfile.TemporaryDirectory(prefix="bench-engine-") as tmp:
        env = dict(os.environ)
        if rev is not None:
            archive = subprocess.run(
                ["git", "-C", str(ROOT), "archive", "--format=tar", rev, "alerts"],
                check=True,
                capture_output=True,
            ).stdout
            with tarfile.open(fileobj=BytesIO(archive)) as tar:
                tar.extractall(tmp, filter="data")
            env[TREE_ENV] = tmp
        only = "--naive-only" if naive else "--indexed-only"
        command = [sys.executable, __file__, only, "--rules", str(n_rules)]
        command += ["--symbols", str(n_symbols), "--rounds", str(rounds)]
        out_file = Path(tmp) / "callgrind.out"
        if instructions:
            env["PYTHONHASHSEED"] = "0"  # the same dict and set orders: the same count each run
            command = [
                "valgrind",
                "--tool=callgrind",
                "--collect-atstart=no",
                f"--toggle-collect={CALLGRIND_TOGGLE}",
                f"--callgrind-out-file={out_file}",
                *command,
                "--counted",
            ]
        child = subprocess.run(command, check=True, capture_output=True, text=True, env=env)
        if not instructions:
            return Timings.from_json(child.stdout.splitlines()[-1])
        for line in out_file.read_text().splitlines():
            if line.startswith(("summary:", "totals:")):
                return int(line.split()[1])
        raise RuntimeError(f"no instruction total in {out_file}")


def measure_at_revision(rev: str, n_rules: int, n_symbols: int, rounds: int) -> Timings:
    """The indexed engine of git revision ``rev``, on the same watches and quotes."""
    timings = _indexed_child(rev, n_rules, n_symbols, rounds)
    assert isinstance(timings, Timings)
    return timings


def instructions_per_batch(
    rev: str | None, n_rules: int, n_symbols: int, rounds: int, *, naive: bool = False
) -> float:
    total = _indexed_child(rev, n_rules, n_symbols, rounds, instructions=True, naive=naive)
    assert isinstance(total, int)
    return total / rounds


def _ms(values: list[float]) -> float:
    return statistics.median(values) * 1000


def _spread(medians: list[float]) -> str:
    return f"{min(medians):,.1f}-{max(medians):,.1f}"


def run(
    n_rules: int = 1_000_000,
    n_symbols: int = 5_000,
    *,
    baseline: str | None = None,
    repeat: int = 1,
    naive: bool = True,
) -> list[tuple[str, float, str]]:
    """Returns (name, value, unit) figures; used by this script and benchmarks/run.py."""
    watches = make_watches(n_rules, n_symbols)
    started = time.perf_counter()
    runs: list[Timings] = []
    before: list[Timings] = []
    for _ in range(repeat):
        # Alternating, so a change in the machine's load falls on both.
        if baseline is not None:
            before.append(measure_at_revision(baseline, n_rules, n_symbols, ROUNDS))
        runs.append(measure(True, watches, n_symbols, rounds=ROUNDS))
    load_s = time.perf_counter() - started
    fast = runs[0]
    # Medians, since other processes on a shared machine make single batches noisy.
    figures = [
        ("rules", float(n_rules), ""),
        ("symbols", float(n_symbols), ""),
        (f"indexed batch (median of {ROUNDS})", _ms(fast.wall), "ms"),
        (f"indexed batch CPU (median of {ROUNDS})", _ms(fast.cpu), "ms"),
        ("alerts, first batch, indexed", float(fast.first_alerts), ""),
    ]
    if repeat > 1:
        figures += [
            (f"indexed wall, {repeat} runs' medians", min(_ms(t.wall) for t in runs), "ms min"),
            ("", max(_ms(t.wall) for t in runs), "ms max"),
            (f"indexed CPU, {repeat} runs' medians", min(_ms(t.cpu) for t in runs), "ms min"),
            ("", max(_ms(t.cpu) for t in runs), "ms max"),
        ]
    if before:
        walls = [_ms(t.wall) for t in before]
        cpus = [_ms(t.cpu) for t in before]
        figures += [
            (f"{baseline} batch (median of medians)", statistics.median(walls), "ms"),
            (f"{baseline} batch CPU (median of medians)", statistics.median(cpus), "ms"),
            (f"{baseline} CPU, runs' medians", min(cpus), "ms min"),
            ("", max(cpus), "ms max"),
            (f"alerts, first batch, {baseline}", float(before[0].first_alerts), ""),
            (
                f"indexed CPU / {baseline} CPU",
                statistics.median([_ms(t.cpu) for t in runs]) / statistics.median(cpus),
                "x",
            ),
        ]
    figures.append((f"load + {ROUNDS + 1} indexed batches, all runs", load_s, "s"))
    if naive:
        # The speed-up compares the same batches (the first NAIVE_ROUNDS) through both.
        slow = measure(False, watches, n_symbols, rounds=NAIVE_ROUNDS)
        same_fast = statistics.median(fast.wall[:NAIVE_ROUNDS])
        figures += [
            (f"indexed, first {NAIVE_ROUNDS} batches (median)", same_fast * 1000, "ms"),
            (f"naive, first {NAIVE_ROUNDS} batches (median)", _ms(slow.wall), "ms"),
            ("speed-up vs naive", statistics.median(slow.wall) / same_fast, "x"),
            # CPU time too: on a loaded machine the wall time of a batch is mostly waiting.
            (f"naive CPU, first {NAIVE_ROUNDS} batches", _ms(slow.cpu), "ms"),
            ("speed-up vs naive, CPU", _ms(slow.cpu) / _ms(fast.cpu[:NAIVE_ROUNDS]), "x"),
            # The same first batch through both: equal counts are a sanity check.
            ("alerts, first batch, naive", float(slow.first_alerts), ""),
        ]
    return figures


def main() -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--rules", type=int, default=1_000_000)
    parser.add_argument("--symbols", type=int, default=5_000)
    parser.add_argument(
        "--baseline",
        metavar="REV",
        help=f"also measure the engine of this git revision ('pre-split' = {PRE_SPLIT})",
    )
    parser.add_argument("--repeat", type=int, default=1, help="indexed runs (and baseline runs)")
    parser.add_argument("--no-naive", action="store_true", help="skip the naive baseline")
    # For the --baseline subprocess and for instruction counts under callgrind.
    parser.add_argument("--indexed-only", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--naive-only", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--rounds", type=int, default=ROUNDS, help=argparse.SUPPRESS)
    parser.add_argument("--counted", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument(
        "--instructions",
        action="store_true",
        help="instead of timing, count the instructions of the indexed batches under callgrind,"
        " and of the same batches through the naive baseline unless --no-naive"
        " (slow: use --rules 100000 --symbols 500)",
    )
    args = parser.parse_args()
    baseline = PRE_SPLIT if args.baseline == "pre-split" else args.baseline
    if args.indexed_only or args.naive_only:
        watches = make_watches(args.rules, args.symbols)
        timings = measure(
            args.indexed_only, watches, args.symbols, args.rounds, counted=args.counted
        )
        print(timings.to_json())
        return 0
    if args.instructions:
        n = 0.0
        for rev in [baseline, None] if baseline else [None]:
            n = instructions_per_batch(rev, args.rules, args.symbols, args.rounds)
            print(f"{rev or 'this checkout':>30}: {n:,.0f} instructions a batch")
        if not args.no_naive:
            # The same batches through the naive baseline: the speed-up, independent of load.
            slow = instructions_per_batch(None, args.rules, args.symbols, args.rounds, naive=True)
            print(f"{'naive baseline':>30}: {slow:,.0f} instructions a batch")
            print(f"{'speed-up vs naive':>30}: {slow / n:,.1f}x in instructions")
        return 0
    figures = run(
        args.rules, args.symbols, baseline=baseline, repeat=args.repeat, naive=not args.no_naive
    )
    for name, value, unit in figures:
        print(f"{name:>40}: {value:,.2f} {unit}".rstrip())
    by_name = {name: value for name, value, _ in figures}
    ok = by_name[f"indexed batch (median of {ROUNDS})"] < 100
    if "speed-up vs naive" in by_name:
        ok = ok and by_name["speed-up vs naive"] >= 100
    print(f"{'target (>=100x, <100 ms)':>40}: {'met' if ok else 'MISSED'}")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
