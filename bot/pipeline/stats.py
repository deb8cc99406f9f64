"""The pipeline's own counters, read by /metrics at scrape time."""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass
class PipelineStats:
    evaluations: int = 0
    alerts_stored: int = 0
    duplicates_refused: int = 0
    messages_sent: int = 0
    messages_edited: int = 0
    delivery_failures: int = 0
    dead_letters: int = 0
    charts_sent: int = 0
    rate_limited: int = 0  # refusals that named a pause (429 Retry-After)
    reconciled: int = 0  # posts found already on the platform after an unknown outcome
    destinations_broken: int = 0  # channels newly marked broken
    rows_dropped: int = 0  # queued messages dropped because their channel is broken
    digests_sent: int = 0
    summaries_sent: int = 0  # mute summaries the platforms accepted
    by_platform: dict[str, int] = field(default_factory=dict)
