"""The data-quality gate: each bad input is NoData or Suspect, and good data resumes."""

from __future__ import annotations

import math
from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from alerts.models import MarketSession as S
from alerts.models import Quote
from alerts.quality import QualityGate, Verdict

T0 = datetime(2025, 1, 27, 9, 0, tzinfo=UTC)  # 04:00 ET, premarket
EVERY = timedelta(seconds=60)


def q(price: float | None, *, at: datetime = T0, pc: float | None = 142.62) -> Quote:
    return Quote("NVDA", price, at, S.PRE, previous_close=pc)


def check(gate: QualityGate, quote: Quote | None, now: datetime = T0) -> Verdict:
    return gate.check("NVDA", quote, now=now, expected_interval=EVERY, session=S.PRE).verdict


@pytest.mark.parametrize("price", [None, math.nan, math.inf, 0.0, -3.0])
def test_unusable_prices_are_nodata_then_a_good_quote_resumes(price: float | None) -> None:
    gate = QualityGate()
    assert check(gate, q(price)) is Verdict.NODATA
    assert check(gate, q(130.0)) is Verdict.OK


@pytest.mark.parametrize("pc", [0.0, 0.0001, -1.0, math.nan])
def test_previous_close_near_zero_is_nodata(pc: float) -> None:
    gate = QualityGate()
    v = gate.check("NVDA", q(130.0, pc=pc), now=T0, expected_interval=EVERY, session=S.PRE)
    assert v.verdict is Verdict.NODATA
    assert v.reason is not None
    assert "previous close" in v.reason
    assert check(gate, q(130.0)) is Verdict.OK


def test_missing_quote_and_missing_previous_close_are_nodata() -> None:
    gate = QualityGate()
    assert check(gate, None) is Verdict.NODATA
    assert check(gate, q(130.0, pc=None)) is Verdict.NODATA
    lenient = QualityGate(require_previous_close=False)
    assert check(lenient, q(130.0, pc=None)) is Verdict.OK


def test_stale_counts_in_the_regular_session_only() -> None:
    gate = QualityGate()
    old = q(130.0, at=T0 - timedelta(seconds=121))

    def in_session(session: S, quote: Quote) -> Verdict:
        return gate.check("NVDA", quote, now=T0, expected_interval=EVERY, session=session).verdict

    assert in_session(S.REGULAR, old) is Verdict.NODATA
    assert in_session(S.REGULAR, q(130.0, at=T0 - timedelta(seconds=119))) is Verdict.OK
    # A thin premarket: the last trade (or yesterday's close) is old, but that is no outage.
    assert in_session(S.PRE, q(142.62, at=T0 - timedelta(hours=12))) is Verdict.OK
    assert in_session(S.POST, old) is Verdict.OK
    assert in_session(S.CLOSED, old) is Verdict.OK


def test_unconfirmed_jump_is_suspect_and_a_return_clears_it() -> None:
    gate = QualityGate()
    assert check(gate, q(140.0)) is Verdict.OK
    spike = q(14.0, at=T0 + timedelta(seconds=1))  # a lost decimal
    v = gate.check("NVDA", spike, now=spike.time, expected_interval=EVERY, session=S.PRE)
    assert v.verdict is Verdict.SUSPECT
    assert v.reason is not None
    assert "jump" in v.reason
    back = q(139.0, at=T0 + timedelta(seconds=2))
    assert check(gate, back, back.time) is Verdict.OK
    last = gate.last_good("NVDA")
    assert last is not None
    assert last.price == 139.0


def test_jump_confirmed_by_the_next_quote_is_accepted() -> None:
    gate = QualityGate()
    assert check(gate, q(100.0)) is Verdict.OK
    first = q(40.0, at=T0 + timedelta(seconds=1))
    assert check(gate, first, first.time) is Verdict.SUSPECT
    # The next quote confirms once the new level has held for the confirmation time.
    second = q(41.0, at=T0 + timedelta(seconds=7))
    assert check(gate, second, second.time) is Verdict.OK
    # ...and the new level is the reference from now on.
    third = q(42.0, at=T0 + timedelta(seconds=8))
    assert check(gate, third, third.time) is Verdict.OK


def test_moves_below_the_threshold_pass() -> None:
    gate = QualityGate()
    assert check(gate, q(142.0)) is Verdict.OK
    drop = q(124.0, at=T0 + timedelta(seconds=5))  # the real DeepSeek move, -13%
    assert check(gate, drop, drop.time) is Verdict.OK


def test_batch_reports_every_requested_symbol() -> None:
    gate = QualityGate()
    good = Quote("AMD", 120.0, T0, S.PRE, previous_close=125.0)
    bad = Quote("NVDA", math.nan, T0, S.PRE, previous_close=142.0)
    batch = gate.judge_batch(
        ["AMD", "NVDA", "MSFT"],
        {"AMD": good, "NVDA": bad},
        now=T0,
        expected_interval=EVERY,
    )
    assert [x.symbol for x in batch.quotes] == ["AMD"]
    assert set(batch.unavailable) == {"NVDA", "MSFT"}
    assert batch.unavailable["MSFT"].startswith("nodata")
    assert batch.symbols == {"AMD", "NVDA", "MSFT"}


prices = st.one_of(
    st.none(),
    st.floats(allow_nan=True, allow_infinity=True),
    st.floats(min_value=0.01, max_value=1e6),
)


@settings(max_examples=300, deadline=None)
@given(st.lists(st.tuples(prices, prices, st.integers(0, 600)), min_size=1, max_size=30))
def test_gate_never_passes_an_unusable_or_unconfirmed_quote(
    seq: list[tuple[float | None, float | None, int]],
) -> None:
    gate = QualityGate()
    last_ok: float | None = None
    for i, (price, pc, age) in enumerate(seq):
        now = T0 + timedelta(seconds=i)
        quote = Quote("X", price, now - timedelta(seconds=age), S.REGULAR, previous_close=pc)
        v = gate.check("X", quote, now=now, expected_interval=EVERY, session=S.REGULAR)
        if v.verdict is not Verdict.OK:
            assert v.reason
            continue
        assert price is not None
        assert math.isfinite(price)
        assert price > 0
        assert pc is not None
        assert pc >= price * gate.min_reference_ratio
        assert age <= 120
        if last_ok is not None and v.reason != "jump confirmed":
            assert abs(price / last_ok - 1) * 100 <= gate.max_jump_pct
        last_ok = price
