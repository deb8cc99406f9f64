"""Mention safety: nothing users or feeds write can ping anyone on Slack or Discord."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from alerts.mentions import ZWSP, discord_markdown, fit, has_ping, slack_mrkdwn, slack_plain

PING_FORMS = [
    "@everyone",
    "@here",
    "@channel",
    "<!channel>",
    "<!here>",
    "<!everyone>",
    "<!here|here>",
    "<!subteam^S0123ABC>",
    "<@U0123ABC>",
    "<@W0123ABC|bob>",
    "<#C0123ABC>",
    "<@123456789012345678>",
    "<@!123456789012345678>",
    "<@&123456789012345678>",
    "<#123456789012345678>",
    "</watch:123456789012345678>",
]


@pytest.mark.parametrize("form", PING_FORMS)
def test_every_ping_form_is_recognised_raw(form: str) -> None:
    assert has_ping(form, "slack") or has_ping(form, "discord")


@pytest.mark.parametrize("form", PING_FORMS)
def test_slack_escapes_neutralise(form: str) -> None:
    text = f"NVDA down {form} again"
    assert not has_ping(slack_mrkdwn(text), "slack")
    assert not has_ping(slack_plain(text), "slack")


@pytest.mark.parametrize("form", PING_FORMS)
def test_discord_escape_neutralises(form: str) -> None:
    text = f"NVDA down {form} again"
    assert not has_ping(discord_markdown(text), "discord")
    assert not has_ping(discord_markdown(text, escape_markdown=False), "discord")


def test_slack_uses_slacks_entity_escaping() -> None:
    assert slack_mrkdwn("S&P <b> x") == "S&amp;P &lt;b&gt; x"
    assert slack_mrkdwn("@everyone") == "@" + ZWSP + "everyone"


def test_discord_markdown_is_escaped() -> None:
    escaped = discord_markdown("**bold** _it_ `code` ~~s~~ ||spoiler|| [x](http://e)")
    assert "\\*\\*bold\\*\\*" in escaped
    assert "\\|\\|spoiler" in escaped
    assert "\\[x\\]" in escaped
    assert discord_markdown("> quote\n# head").startswith("\\> quote\n\\#")


def test_control_and_bidi_characters_are_dropped() -> None:
    assert slack_mrkdwn("a\x1b[2Jb\u202ec\x00") == "a[2Jbc"


def test_fit_never_splits_an_escape() -> None:
    text = "&" * 100
    out = fit(text, 23, slack_mrkdwn)
    assert len(out) <= 23
    assert out.endswith("…")
    assert out[:-1].replace("&amp;", "") == ""


@given(st.text(alphabet=st.sampled_from(list("@<>!&#^/|*_ abcheryonvlU0123456789")), max_size=80))
def test_no_text_pings_after_escaping(text: str) -> None:
    assert not has_ping(slack_mrkdwn(text), "slack")
    assert not has_ping(discord_markdown(text), "discord")
    assert not has_ping(discord_markdown(text, escape_markdown=False), "discord")


@given(st.text(max_size=300), st.integers(min_value=2, max_value=200))
def test_fit_respects_the_limit(text: str, limit: int) -> None:
    assert len(fit(text, limit, discord_markdown)) <= limit


@given(st.text(max_size=300), st.integers(min_value=0, max_value=200))
def test_fit_without_an_escape_cuts_text_the_renderer_already_escaped(
    text: str, limit: int
) -> None:
    """``escape=None`` is the renderer saying "already escaped" as data (no callback of its
    own for this module to call): the same cut as the identity function gave."""
    out = fit(text, limit)
    assert out == fit(text, limit, lambda s: s)
    assert len(out) <= limit
    if len(text) <= limit:
        assert out == text
