"""The alert engine: turns quotes and headlines into alerts, once per crossing, by symbol.

One module per job: ``binding`` (watches into the per-symbol ``index``), ``readings`` and
``baskets`` (one reading per rule family, through the shared ``bands`` arithmetic), the pure
lifecycle (``alerts.lifecycle.advance``), ``keys`` (alert keys and severity), ``outages``
(NoData and its notices), ``news`` (headline matching), ``volume`` (volume profiles), and
``core``, the ``Engine`` that routes a quote through them.
"""

from alerts.engine.config import EngineConfig, Evaluation
from alerts.engine.core import Engine
from alerts.engine.volume import VolumeProfile, build_volume_profile
from alerts.lifecycle import RuleState, RuleStatus

__all__ = [
    "Engine",
    "EngineConfig",
    "Evaluation",
    "RuleState",
    "RuleStatus",
    "VolumeProfile",
    "build_volume_profile",
]
