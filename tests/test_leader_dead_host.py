"""A leader whose host dies (no FIN, no RST: frozen, and its packets dropped) is replaced in time.

`kill -9` (tests/test_run_processes.py) closes the leader's sockets: the server frees the lock
at once. A host that dies or drops off the network closes nothing. Here the leader is frozen
(SIGSTOP) and every packet of its PostgreSQL connections is dropped on loopback (iptables):
only the server's keepalives on the lock session (bot.leadership.SERVER_KEEPALIVES) can end
that session and free the lock. Then the network heals and the old leader resumes: it must
find it lost the lock and step down without posting anything, not even what a poll it had in
flight when its host died brings back (bot.leadership.LEADER_LEASE).

Needs root, iptables and ss, and PostgreSQL on 127.0.0.1; skipped with one line otherwise.
"""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import signal
import subprocess
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from sqlalchemy.engine import make_url

from bot.fakes.yahoo_server import FakeYahoo
from bot.store import SqlStore
from tests.test_run_processes import RunProcess, Ticker, run_env, took_over

pytestmark = pytest.mark.postgres

RULE_COMMENT = "marketbot-test-dead-host"


class DeadHost:
    """Makes a process's host "die": frozen, and its TCP connections to the server silenced.

    Every rule added is removed by :meth:`heal` (the fixture calls it even after a failure),
    and a frozen process is always let go on.
    """

    def __init__(self, server_port: int) -> None:
        self.server_port = server_port
        self.rules: list[list[str]] = []
        self.frozen: list[int] = []

    def die(self, pid: int) -> list[int]:
        """Freeze ``pid``, then drop both directions of each of its connections to the
        server; returns the local ports silenced."""
        os.kill(pid, signal.SIGSTOP)  # frozen first: no new connection is opened after this
        self.frozen.append(pid)
        ports = connection_ports(pid, self.server_port)
        assert ports, f"pid {pid} has no TCP connection to 127.0.0.1:{self.server_port}"
        for port in ports:
            for direction in (
                ["--sport", str(port), "--dport", str(self.server_port)],  # to the server
                ["--sport", str(self.server_port), "--dport", str(port)],  # to the process
            ):
                rule = ["INPUT", "-i", "lo", "-p", "tcp", *direction]
                rule += ["-m", "comment", "--comment", RULE_COMMENT, "-j", "DROP"]
                _iptables("-I", *rule)
                self.rules.append(rule)
        return ports

    def heal(self) -> None:
        """The network back (every rule removed), then the frozen processes let go on."""
        errors = []
        while self.rules:
            rule = self.rules.pop()
            try:
                _iptables("-D", *rule)
            except subprocess.CalledProcessError as exc:
                errors.append(f"{rule}: {exc.stderr}")
        while self.frozen:
            pid = self.frozen.pop()
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGCONT)
        assert not errors, f"iptables rules left in place: {errors}"


def connection_ports(pid: int, server_port: int) -> list[int]:
    """The local ports of ``pid``'s TCP connections to 127.0.0.1:``server_port`` (``ss``)."""
    listing = subprocess.run(
        ["ss", "-tnpH", "dst", f"127.0.0.1:{server_port}"],
        capture_output=True,
        text=True,
        check=True,
        timeout=10,
    ).stdout
    ports = []
    for line in listing.splitlines():
        fields = line.split()
        if len(fields) < 6 or not re.search(rf"\bpid={pid},", line):
            continue
        local = fields[3]  # State Recv-Q Send-Q Local Peer Process
        ports.append(int(local.rsplit(":", 1)[1]))
    return sorted(set(ports))


def _iptables(*args: str) -> None:
    subprocess.run(["iptables", "-w", "5", *args], capture_output=True, text=True, check=True)


def _skip_unless_packets_can_be_dropped() -> None:
    if os.geteuid() != 0:
        pytest.skip("dropping a leader's packets needs root (iptables)")
    for tool in ("iptables", "ss"):
        if shutil.which(tool) is None:
            pytest.skip(f"{tool} is not installed: cannot silence the leader's connections")
    probe = ["INPUT", "-i", "lo", "-p", "tcp", "--sport", "1", "--dport", "1"]
    probe += ["-m", "comment", "--comment", RULE_COMMENT, "-j", "DROP"]
    try:
        _iptables("-I", *probe)
    except (subprocess.CalledProcessError, OSError) as exc:
        reason = getattr(exc, "stderr", None) or exc
        pytest.skip(f"iptables cannot add a rule here: {' '.join(str(reason).split())}")
    _iptables("-D", *probe)


@pytest.fixture
def dead_host(postgres_store: SqlStore) -> Iterator[DeadHost]:
    url = make_url(postgres_store.url)
    if url.host not in ("127.0.0.1", "localhost"):
        pytest.skip(f"PostgreSQL is at {url.host}, not on loopback: cannot drop its packets")
    _skip_unless_packets_can_be_dropped()
    host = DeadHost(url.port or 5432)
    try:
        yield host
    finally:
        host.heal()


@pytest.fixture
def own_yahoo() -> Iterator[FakeYahoo]:
    """The first leader's Yahoo: its polls are counted apart from the standby's."""
    with FakeYahoo() as fake:
        yield fake


class Prices:
    """One price for both fakes (each re-quoted by a Ticker of its own, so never stale)."""

    def __init__(self, *yahoos: FakeYahoo) -> None:
        self.tickers = [Ticker(yahoo) for yahoo in yahoos]

    def set(self, symbol: str, price: float) -> None:
        for ticker in self.tickers:
            ticker.set(symbol, price)


@pytest.fixture
def prices(fake_yahoo: FakeYahoo, own_yahoo: FakeYahoo) -> Iterator[Prices]:
    both = Prices(own_yahoo, fake_yahoo)
    for ticker in both.tickers:
        ticker.__enter__()
    yield both
    for ticker in both.tickers:
        ticker.__exit__()


def leader_and_standby(
    tmp_path: Path,
    store: SqlStore,
    fake_yahoo: FakeYahoo,
    own_yahoo: FakeYahoo,
    prices: Prices,
    processes: list[RunProcess],
) -> tuple[RunProcess, RunProcess]:
    """A leader that posted BTC-USD's alert (ETH-USD quiet) and a standby; coins trade around
    the clock, so the market is open whatever the wall clock says."""
    now = datetime.now(UTC)
    for symbol in ("BTC-USD", "ETH-USD"):
        store.add_watch("console:default", symbol, "drop 10%", now=now)
        for yahoo in (fake_yahoo, own_yahoo):
            yahoo.set_closes(symbol, [(now.date() - timedelta(days=1), 100.0)])
    prices.set("BTC-USD", 85.0)  # -15%: fires at once
    prices.set("ETH-USD", 99.0)
    leader = RunProcess(run_env(store.url, own_yahoo, tmp_path / "c1"), tmp_path)
    processes.append(leader)
    leader.wait_for(lambda: len(leader.panels()) == 1, 60, "the BTC-USD alert")
    standby = RunProcess(run_env(store.url, fake_yahoo, tmp_path / "c2"), tmp_path)
    processes.append(standby)
    standby.wait_for(lambda: standby.said("standby", stream="err"), 60, "standby")
    return leader, standby


def stepped_down(leader: RunProcess, healed: float) -> None:
    """The resumed old leader's heartbeat found the lock lost; it waits as a standby."""
    leader.wait_for(lambda: leader.said("leadership lost", stream="err"), 20, "the loss")
    lost = next(at for at, line in list(leader.err) if "leadership lost" in line)
    leader.wait_for(
        lambda: leader.said("standby: another `marketbot run` leads", stream="err"),
        20,
        "the old leader waiting as a standby",
    )
    print(
        f"old leader resumed: noticed the loss {lost - healed:.2f} s after the heal; quotes"
        f" dropped as unconfirmed: {leader.said('quotes dropped', stream='err')}"
    )
    assert leader.said("leader: stepped down; waiting as a standby", stream="err")
    assert sum("this process leads" in line for _, line in list(leader.err)) == 1
    assert leader.proc.poll() is None


def posted_once_each(leader: RunProcess, standby: RunProcess, store: SqlStore) -> None:
    """BTC-USD by the first leader, ETH-USD by the new one; nothing twice."""
    leader_panels, standby_panels = leader.panels(), standby.panels()
    assert len(leader_panels) == 1, leader.log
    assert "BTC-USD" in leader_panels[0]
    assert len(standby_panels) == 1, standby.log  # BTC-USD's state reloaded, not re-fired
    assert "ETH-USD" in standby_panels[0]
    assert "BTC-USD" not in standby_panels[0]
    assert store.outbox_counts() == {"sent": 2}
    assert standby.proc.poll() is None


def test_a_dead_hosts_leader_is_replaced_within_the_budget_and_on_its_return_steps_down(
    tmp_path: Path,
    fake_yahoo: FakeYahoo,
    own_yahoo: FakeYahoo,
    prices: Prices,
    postgres_store: SqlStore,
    processes: list[RunProcess],
    dead_host: DeadHost,  # after processes: healed (rules gone, SIGCONT) before they stop
) -> None:
    leader, standby = leader_and_standby(
        tmp_path, postgres_store, fake_yahoo, own_yahoo, prices, processes
    )
    frozen = time.monotonic()
    ports = dead_host.die(leader.proc.pid)
    died = time.monotonic()
    took_over(
        standby,
        died,
        f"the leader's host died ({len(ports)} connections silenced in {died - frozen:.2f} s)",
    )

    # A new crossing after the takeover reaches the channel from the new leader, once.
    prices.set("ETH-USD", 80.0)
    standby.wait_for(lambda: len(standby.panels()) >= 1, 20, "the ETH-USD alert")
    polls = fake_yahoo.counts["quote"]
    standby.wait_for(lambda: fake_yahoo.counts["quote"] >= polls + 5, 20, "five more polls")

    # The network heals and the old leader resumes: its lock session is gone (the server
    # ended it; its own keepalives ended its end), so its heartbeat finds the lock lost and
    # it steps down to wait as a standby.
    own_polls = own_yahoo.counts["quote"]
    dead_host.heal()
    stepped_down(leader, time.monotonic())
    polls = fake_yahoo.counts["quote"]
    standby.wait_for(lambda: fake_yahoo.counts["quote"] >= polls + 5, 20, "five more polls")
    posted_once_each(leader, standby, postgres_store)
    # Resumed, its overdue poll and its overdue heartbeat are due together: the poll may ask
    # Yahoo once before the heartbeat finds the lock lost, but the answer is dropped (the
    # lock is unconfirmed since the freeze: bot.leadership.LEADER_LEASE); no more after.
    print(f"old leader's Yahoo requests after resuming: {own_yahoo.counts['quote'] - own_polls}")
    assert own_yahoo.counts["quote"] <= own_polls + 1, leader.log


def test_a_leader_whose_host_died_mid_poll_does_not_alert_on_the_answer_when_it_returns(
    tmp_path: Path,
    fake_yahoo: FakeYahoo,
    own_yahoo: FakeYahoo,
    prices: Prices,
    postgres_store: SqlStore,
    processes: list[RunProcess],
    dead_host: DeadHost,
) -> None:
    """The host dies with a poll in flight whose answer (ETH-USD -20%) arrives meanwhile, and
    comes back soon after the takeover, while that request is still within its timeout: the
    old leader reads the answer before its heartbeat has found the lock lost. The new leader
    alerted on those prices already; the old one must not do so again."""
    leader, standby = leader_and_standby(
        tmp_path, postgres_store, fake_yahoo, own_yahoo, prices, processes
    )
    own_yahoo.fail("/v7/finance/quote", "slow", delay=1.0)  # the next poll: answered in 1 s
    asked = own_yahoo.counts["quote"]
    leader.wait_for(lambda: own_yahoo.counts["quote"] > asked, 10, "the slow poll")
    prices.set("ETH-USD", 80.0)  # what that poll's answer, and the standby's first, will say
    dead_host.die(leader.proc.pid)
    died = time.monotonic()
    took_over(standby, died, "the leader's host died mid-poll")
    standby.wait_for(lambda: len(standby.panels()) >= 1, 20, "the ETH-USD alert")

    dead_host.heal()
    stepped_down(leader, time.monotonic())
    polls = fake_yahoo.counts["quote"]
    standby.wait_for(lambda: fake_yahoo.counts["quote"] >= polls + 5, 20, "five more polls")
    posted_once_each(leader, standby, postgres_store)
