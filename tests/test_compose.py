"""Message composition, with a golden DeepSeek storm (2025-01-27) for a basket:ai channel."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from alerts.baskets import BUILTIN_BASKETS
from alerts.compose import compose_message
from alerts.engine import Engine
from alerts.grouping import GroupingConfig, decide_groups
from alerts.models import (
    Alert,
    AlertKind,
    AlertMessage,
    ContextLine,
    GroupAction,
    MarketSession,
    NewsItem,
    OpenGroup,
    Quote,
    Severity,
    Watch,
)

T0 = datetime(2025, 1, 27, 9, 0, tzinfo=UTC)  # 04:00 ET
S = timedelta(seconds=1)

# Friday 2025-01-24 closes, and the premarket moves reported for Monday 2025-01-27.
CLOSES = {
    "NVDA": 142.62,
    "AVGO": 224.57,
    "AMD": 124.71,
    "MSFT": 444.06,
    "GOOGL": 200.21,
    "META": 647.49,
    "ASML": 744.25,
}
MOVES = {
    "NVDA": -13.0,
    "AVGO": -12.9,
    "AMD": -6.3,
    "MSFT": -6.7,
    "GOOGL": -4.6,
    "META": -5.5,
    "ASML": -10.6,
}


def quote(symbol: str, at: datetime, move: float | None = None) -> Quote:
    close = CLOSES[symbol]
    pct = MOVES[symbol] if move is None else move
    return Quote(symbol, round(close * (1 + pct / 100), 2), at, MarketSession.PRE, close)


def render(message: AlertMessage) -> str:
    """A plain rendering that shows everything the platforms get, for golden comparison."""
    lines = [f"[{message.severity.value}] {message.title}"]
    for a in message.alerts:
        change = f"{a.change_pct:+.1f}%" if a.change_pct is not None else "n/a"
        price = f" {a.price:.2f}" if a.price is not None else ""
        lines.append(f"  {a.symbol} {change}{price} {a.kind.value} t{a.tier} {a.severity.value}")
    for c in message.context:
        lines.append(f"  ctx {c.label} {c.change_pct:+.1f}%")
    for h in message.headlines:
        lines.append(f"  news {h.title}")
    return "\n".join(lines)


def test_golden_deepseek_basket_storm_with_edits() -> None:
    engine = Engine()
    engine.load([Watch(1, "slack:C1", "basket:ai", "drop 5%", T0)], [])
    config = GroupingConfig()
    open_groups: dict[str, OpenGroup] = {}
    members: dict[int, list[Alert]] = {}
    messages: list[tuple[str, str]] = []
    next_id = 1

    def step(at: datetime, quotes: list[Quote]) -> None:
        nonlocal next_id
        alerts = list(engine.on_quotes(quotes, at).alerts)
        by_key = {a.key: a for a in alerts}
        for d in decide_groups(open_groups, alerts, at, config):
            if d.action is GroupAction.NEW:
                gid, next_id = next_id, next_id + 1
                members[gid] = []
                opened = at
            else:
                assert d.group_id is not None
                gid, opened = d.group_id, open_groups[d.channel].opened_at
            members[gid].extend(by_key[k] for k in d.alert_keys)
            open_groups[d.channel] = OpenGroup(
                gid, d.channel, opened, at, tuple(a.key for a in members[gid])
            )
            message = compose_message(
                d.channel,
                members[gid],
                context=[ContextLine("NQ=F", "Nasdaq 100 fut", 20950.0, -4.3)],
                headlines=[
                    NewsItem(
                        "n1",
                        "DeepSeek's cheap AI model rattles chip stocks",
                        T0 - 3600 * S,
                        symbols=("NVDA",),
                    )
                ],
                baskets=BUILTIN_BASKETS,
                now=at,
            )
            messages.append((f"{d.action.value} #{gid} {at:%H:%M:%S}", render(message)))

    step(T0, [quote("NVDA", T0), quote("AVGO", T0), quote("ASML", T0)])
    step(T0 + 30 * S, [quote("MSFT", T0 + 30 * S), quote("AMD", T0 + 30 * S)])
    step(T0 + 50 * S, [quote("META", T0 + 50 * S), quote("GOOGL", T0 + 50 * S)])
    step(T0 + 55 * S, [quote(s, T0 + 55 * S) for s in CLOSES])  # same prices again: silence
    step(T0 + 300 * S, [quote("NVDA", T0 + 300 * S, -15.2)])  # a deeper tier, later: new message

    expected = [
        (
            "new #1 09:00:00",
            """[critical] AI selloff: 3 of 8 down more than 5%
  NVDA -13.0% 124.08 firing t1 critical
  AVGO -12.9% 195.60 firing t1 critical
  ASML -10.6% 665.36 firing t1 critical
  ctx Nasdaq 100 fut -4.3%
  news DeepSeek's cheap AI model rattles chip stocks""",
        ),
        (
            "join #1 09:00:30",
            """[critical] AI selloff: 5 of 8 down more than 5%
  NVDA -13.0% 124.08 firing t1 critical
  AVGO -12.9% 195.60 firing t1 critical
  ASML -10.6% 665.36 firing t1 critical
  basket:ai -9.9% firing t0 warning
  MSFT -6.7% 414.31 firing t0 warning
  AMD -6.3% 116.85 firing t0 warning
  ctx Nasdaq 100 fut -4.3%
  news DeepSeek's cheap AI model rattles chip stocks""",
        ),
        (
            "join #1 09:00:50",
            """[critical] AI selloff: 6 of 8 down more than 5%
  NVDA -13.0% 124.08 firing t1 critical
  AVGO -12.9% 195.60 firing t1 critical
  ASML -10.6% 665.36 firing t1 critical
  basket:ai -9.9% firing t0 warning
  MSFT -6.7% 414.31 firing t0 warning
  AMD -6.3% 116.85 firing t0 warning
  META -5.5% 611.88 firing t0 warning
  ctx Nasdaq 100 fut -4.3%
  news DeepSeek's cheap AI model rattles chip stocks""",
        ),
        (
            "new #2 09:05:00",
            """[critical] NVDA -15.2% premarket
  NVDA -15.2% 120.94 escalated t2 critical
  ctx Nasdaq 100 fut -4.3%
  news DeepSeek's cheap AI model rattles chip stocks""",
        ),
    ]
    assert messages == expected


def alert(symbol: str, pct: float, *, severity: Severity = Severity.WARNING, **kw: object) -> Alert:
    return Alert(
        key=f"k:{symbol}:{pct}:{kw.get('kind', 'firing')}",
        channel="c",
        kind=AlertKind(str(kw.get("kind", "firing"))),
        symbol=symbol,
        at=T0,
        severity=severity,
        rule_text=str(kw.get("rule", "drop 10%")),
        change_pct=pct,
        price=100 * (1 + pct / 100),
        session=MarketSession(str(kw.get("session", "pre"))),
    )


def test_single_alert_title() -> None:
    m = compose_message("c", [alert("NVDA", -13.04)], now=T0)
    assert m.title == "NVDA -13.0% premarket"
    assert m.severity is Severity.WARNING


def test_two_alerts_most_severe_first() -> None:
    m = compose_message(
        "c",
        [alert("AMD", -11.0), alert("NVDA", -10.5, severity=Severity.CRITICAL)],
        now=T0,
    )
    assert [a.symbol for a in m.alerts] == ["NVDA", "AMD"]
    assert m.title == "NVDA -10.5%, AMD -11.0% premarket"
    assert m.severity is Severity.CRITICAL


def test_regular_session_has_no_session_word() -> None:
    m = compose_message("c", [alert("NVDA", 5.2, rule="rise 5%", session="regular")], now=T0)
    assert m.title == "NVDA +5.2%"


def test_level_rule_title() -> None:
    m = compose_message("c", [alert("NVDA", 6.0, rule="above 106", session="regular")], now=T0)
    assert m.title == "NVDA above 106 at 106.00"


def test_watchlist_leads_when_three_names_outside_any_basket_move() -> None:
    alerts = [alert("F", -11.0), alert("GM", -12.0), alert("TSLA", -14.0)]
    m = compose_message("c", alerts, baskets=BUILTIN_BASKETS, now=T0)
    assert m.title == "Watchlist selloff: 3 names down more than 10%"


def test_rally_headline() -> None:
    alerts = [alert(s, 6.0, rule="rise 5%") for s in ("NVDA", "AMD", "AVGO")]
    m = compose_message("c", alerts, baskets=BUILTIN_BASKETS, now=T0)
    assert m.title == "AI rally: 3 of 8 up more than 5%"


def test_escalation_supersedes_first_fire_of_the_same_name() -> None:
    first = alert("NVDA", -10.5)
    later = Alert(
        key="k2",
        channel="c",
        kind=AlertKind.ESCALATED,
        symbol="NVDA",
        at=T0 + 60 * S,
        severity=Severity.CRITICAL,
        rule_text="drop 10%",
        change_pct=-15.5,
        tier=1,
    )
    m = compose_message("c", [first, later], now=T0)
    assert m.alerts == (later,)


def test_notices_titles() -> None:
    degraded = Alert("d", "c", AlertKind.DEGRADED, "*", T0, note="unreachable: AMD, NVDA")
    m = compose_message("c", [degraded], now=T0)
    assert m.title == "Market data degraded: unreachable: AMD, NVDA"
    news = Alert("n", "c", AlertKind.NEWS, "news", T0, headline="DeepSeek R1 tops app store")
    assert compose_message("c", [news], now=T0).title == "News: DeepSeek R1 tops app store"


def test_other_channels_alerts_are_not_shown() -> None:
    other = Alert("x", "elsewhere", AlertKind.FIRING, "AMD", T0, change_pct=-12.0)
    m = compose_message("c", [alert("NVDA", -13.0), other], now=T0)
    assert [a.symbol for a in m.alerts] == ["NVDA"]


def test_watchlist_mixed_directions() -> None:
    alerts = [alert("F", -11.0), alert("GM", 12.0, rule="rise 10%"), alert("TSLA", -14.0)]
    m = compose_message("c", alerts, baskets=BUILTIN_BASKETS, now=T0)
    assert m.title == "Watchlist: 3 names moving"


def test_basket_headline_counts_names_from_earlier_messages() -> None:
    engine = Engine()
    engine.load([Watch(1, "c", "basket:ai", "drop 5%", T0)], [])
    engine.on_quotes([quote(s, T0) for s in ("ASML", "GOOGL")], T0)
    later = [quote(s, T0 + 90 * S) for s in ("NVDA", "AVGO", "MSFT")]
    alerts = [a for a in engine.on_quotes(later, T0 + 90 * S).alerts if a.symbol != "basket:ai"]
    assert {a.symbol for a in alerts} == {"NVDA", "AVGO", "MSFT"}
    alone = compose_message("c", alerts, baskets=BUILTIN_BASKETS, now=T0)
    assert alone.title == "AI selloff: 3 of 8 down more than 5%"
    moves = engine.latest_changes()
    assert moves["ASML"] == pytest.approx(-10.6, abs=0.01)
    whole = compose_message("c", alerts, baskets=BUILTIN_BASKETS, now=T0, moves=moves)
    assert whole.title == "AI selloff: 4 of 8 down more than 5%"  # ASML fired earlier


def test_two_watches_on_one_symbol_crossing_together_both_show() -> None:
    # "drop 7%" and "move 7%" on NVDA cross on the same quote: two crossings, two lines,
    # each with its own rule and note (one line per symbol used to hide the second watch).
    engine = Engine()
    engine.load(
        [
            Watch(1, "c", "NVDA", "drop 7%", T0, note="core position"),
            Watch(2, "c", "NVDA", "move 7%", T0, note="options hedge"),
        ],
        [],
    )
    quote = Quote("NVDA", CLOSES["NVDA"] * 0.87, T0, MarketSession.PRE, CLOSES["NVDA"])
    alerts = engine.on_quotes([quote], T0).alerts
    assert len(alerts) == 2
    m = compose_message("c", alerts, now=T0)
    assert sorted((a.rule_text, a.note) for a in m.alerts) == [
        ("drop 7%", "core position"),
        ("move 7%", "options hedge"),
    ]
