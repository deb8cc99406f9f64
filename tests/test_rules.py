"""Rule language: what parses, to what, and how refusals read."""

from __future__ import annotations

from datetime import timedelta

import pytest
from hypothesis import given
from hypothesis import strategies as st

from alerts.rules import (
    DEFAULT_RULE_TEXT,
    Basis,
    BreadthRule,
    ChangeRule,
    Direction,
    GapRule,
    LevelRule,
    NewsRule,
    Rule,
    RuleSyntaxError,
    VolumeRule,
    parse_rule,
    rule_target_problem,
)

M = timedelta(minutes=1)

GOOD: list[tuple[str, Rule, str]] = [
    ("drop 10%", ChangeRule(Direction.DROP, 10.0), "drop 10%"),
    ("drop 10", ChangeRule(Direction.DROP, 10.0), "drop 10%"),
    ("DROP 10 %", ChangeRule(Direction.DROP, 10.0), "drop 10%"),
    ("  drop   7.5 percent ", ChangeRule(Direction.DROP, 7.5), "drop 7.5%"),
    ("-10%", ChangeRule(Direction.DROP, 10.0), "drop 10%"),
    ("+4%", ChangeRule(Direction.RISE, 4.0), "rise 4%"),
    ("down 3%", ChangeRule(Direction.DROP, 3.0), "drop 3%"),
    ("up 2.50%", ChangeRule(Direction.RISE, 2.5), "rise 2.5%"),
    ("move 5%", ChangeRule(Direction.MOVE, 5.0), "move 5%"),
    ("rise 5% from open", ChangeRule(Direction.RISE, 5.0, Basis.OPEN), "rise 5% from open"),
    ("drop 5% from close", ChangeRule(Direction.DROP, 5.0), "drop 5%"),
    ("drop 3% in 15m", ChangeRule(Direction.DROP, 3.0, window=15 * M), "drop 3% in 15m"),
    ("move 2% in 1h30m", ChangeRule(Direction.MOVE, 2.0, window=90 * M), "move 2% in 1h30m"),
    ("move 2% within 2 hours", ChangeRule(Direction.MOVE, 2.0, window=120 * M), "move 2% in 2h"),
    ("drop 5% for 2m", ChangeRule(Direction.DROP, 5.0, confirm=2 * M), "drop 5% for 2m"),
    (
        "drop 3% in 15m for 30s",
        ChangeRule(Direction.DROP, 3.0, window=15 * M, confirm=timedelta(seconds=30)),
        "drop 3% in 15m for 30s",
    ),
    ("above 150", LevelRule(True, 150.0), "above 150"),
    ("above $150.25", LevelRule(True, 150.25), "above 150.25"),
    ("> 20950", LevelRule(True, 20950.0), "above 20950"),
    ("below 120.5", LevelRule(False, 120.5), "below 120.5"),
    ("<0.5 for 5m", LevelRule(False, 0.5, 5 * M), "below 0.5 for 5m"),
    ("gap 4%", GapRule(Direction.MOVE, 4.0), "gap 4%"),
    ("gap down 3", GapRule(Direction.DROP, 3.0), "gap down 3%"),
    ("gap up 3%", GapRule(Direction.RISE, 3.0), "gap up 3%"),
    ("volume 3x", VolumeRule(3.0), "volume 3x"),
    ("VOLUME 2.5 x", VolumeRule(2.5), "volume 2.5x"),
    ("breadth 5 of 8 drop 5%", BreadthRule(5, Direction.DROP, 5.0, 8), "breadth 5 of 8 drop 5%"),
    ("breadth 3 rise 2", BreadthRule(3, Direction.RISE, 2.0), "breadth 3 rise 2%"),
    ("news DeepSeek", NewsRule("deepseek"), "news deepseek"),
    ("news  export   controls", NewsRule("export controls"), "news export controls"),
]


@pytest.mark.parametrize(("text", "rule", "canonical"), GOOD)
def test_parse_good(text: str, rule: Rule, canonical: str) -> None:
    parsed = parse_rule(text)
    assert parsed == rule
    assert parsed.canonical == canonical
    assert parse_rule(parsed.canonical) == parsed


def test_default_rule() -> None:
    assert parse_rule(DEFAULT_RULE_TEXT) == ChangeRule(Direction.DROP, 10.0)


BAD: list[tuple[str, str | None]] = [
    ("dorp 10%", "dorp"),
    ("drop ten%", "ten"),
    ("drop 10% in 15x", "x"),
    ("drop 10% tomorrow", "tomorrow"),
    ("10%", "10"),
    ("above 10%", "%"),
    ("drop 0%", "0"),
    ("drop 100%", None),
    ("drop 10% in 15m from open", "from"),
    ("breadth 9 of 8 drop 5%", None),
    ("breadth 5 of 8 sideways 5%", "sideways"),
    ("drop 10% for 3y", "y"),
    ("gap", None),
    ("", None),
    ("news", None),
    ("drop 10%\x00", None),
    ("drop " + "1" * 300, None),
]


@pytest.mark.parametrize(("text", "word"), BAD)
def test_parse_bad_names_the_word_and_shows_an_example(text: str, word: str | None) -> None:
    with pytest.raises(RuleSyntaxError) as info:
        parse_rule(text)
    message = str(info.value)
    assert "Try for example" in message
    example = message.split('Try for example: "')[1].rstrip('".')
    parse_rule(example)  # the example we show must itself be a valid rule
    if word is not None:
        assert info.value.word == word
        assert f'"{word}"' in message
    assert "\n" not in message


def test_error_is_a_value_error() -> None:
    assert issubclass(RuleSyntaxError, ValueError)


@given(st.text(max_size=60))
def test_parser_never_crashes(text: str) -> None:
    try:
        rule = parse_rule(text)
    except RuleSyntaxError:
        return
    assert parse_rule(rule.canonical) == rule


_pct = st.decimals(min_value="0.01", max_value="99.99", places=2).map(float)
_price = st.decimals(min_value="0.01", max_value="999999.99", places=2).map(float)
_dur = st.integers(min_value=1, max_value=24 * 60).map(lambda m: timedelta(minutes=m))
_rules = st.one_of(
    st.builds(
        ChangeRule,
        st.sampled_from(list(Direction)),
        _pct,
        st.just(Basis.CLOSE),
        st.none() | _dur,
        st.none() | _dur,
    ),
    st.builds(ChangeRule, st.sampled_from(list(Direction)), _pct, st.just(Basis.OPEN)),
    st.builds(LevelRule, st.booleans(), _price, st.none() | _dur),
    st.builds(GapRule, st.sampled_from(list(Direction)), _pct),
    st.builds(VolumeRule, _pct),
    st.builds(BreadthRule, st.integers(1, 8), st.sampled_from(list(Direction)), _pct),
)


@given(_rules)
def test_canonical_round_trip(rule: Rule) -> None:
    assert parse_rule(rule.canonical) == rule


def test_breadth_needs_a_basket() -> None:
    rule = parse_rule("breadth 5 of 8 drop 5%")
    problem = rule_target_problem(rule, "NVDA")
    assert problem is not None
    assert "basket:ai breadth" in problem
    assert rule_target_problem(rule, "basket:ai") is None
    assert rule_target_problem(parse_rule("drop 5%"), "NVDA") is None
