"""News matching: headlines against ``news KEYWORD`` watches, each story once per watch."""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import replace
from datetime import datetime

from alerts.engine.config import EngineConfig
from alerts.engine.index import Binding
from alerts.lifecycle import RuleState
from alerts.models import Alert, AlertKind, NewsItem, Severity
from alerts.rules import NewsRule

_KEYWORD_CACHE: dict[str, re.Pattern[str]] = {}


def keyword_pattern(keyword: str) -> re.Pattern[str]:
    """Whole words, any case: "ai" matches "AI stocks" but not "said"."""
    pattern = _KEYWORD_CACHE.get(keyword)
    if pattern is None:
        pattern = re.compile(r"(?<!\w)" + re.escape(keyword) + r"(?!\w)", re.IGNORECASE)
        _KEYWORD_CACHE[keyword] = pattern
    return pattern


def match_news(
    bindings: Iterable[Binding],
    states: Mapping[tuple[int, str], RuleState],
    items: Sequence[NewsItem],
    now: datetime,
    cfg: EngineConfig,
) -> tuple[dict[tuple[int, str], RuleState], list[Alert]]:
    """The news alerts owed and the states that remember which stories were alerted."""
    changed: dict[tuple[int, str], RuleState] = {}
    alerts: list[Alert] = []
    recent = [i for i in items if now - i.published <= cfg.news_max_age]
    for b in bindings:
        rule = b.rule
        assert isinstance(rule, NewsRule)
        pattern = keyword_pattern(rule.keyword)
        st = states.get(b.key) or RuleState(b.watch.id, b.symbol)
        seen = list(st.seen)
        found: list[Alert] = []
        for item in recent:
            if item.key in seen or not pattern.search(item.title):
                continue
            target = b.watch.target
            if target.lower() != "news" and item.symbols and target not in item.symbols:
                continue
            seen.append(item.key)
            found.append(_news_alert(b, rule, item, target, now))
        if found:
            changed[b.key] = replace(st, seen=tuple(seen[-cfg.news_memory :]), last_alert_at=now)
            alerts.extend(found)
    return changed, alerts


def _news_alert(b: Binding, rule: NewsRule, item: NewsItem, target: str, now: datetime) -> Alert:
    return Alert(
        key=f"{b.watch.id}:news:{item.key}",
        channel=b.channel,
        kind=AlertKind.NEWS,
        symbol=item.symbols[0] if item.symbols else target,
        at=now,
        severity=Severity.INFO,
        watch_id=b.watch.id,
        rule_text=rule.canonical,
        headline=item.title,
        url=item.url,
        note=b.watch.note,
    )
