"""logtide detectors: streaming anomaly detectors, pure and deterministic, with serialisable state.

    det = detectors.build(detectors.DEFAULT)          # or build("seasonal", periods=[[86400, 48]])
    s = det.update(ts_seconds, value)                 # Score(score, expected, lower, upper)
    blob = det.to_bytes(); det = detectors.from_bytes(blob)

``score`` is in [0, 1]: -log10(tail probability) / 8 by default, so 0.5 means "once in 10,000
normal points" on any series; alarm at ``score >= 0.5``.
"""

from __future__ import annotations

from typing import Any

from detectors.base import Detector, Score
from detectors.changepoint import CusumDetector, PageHinkleyDetector
from detectors.ensemble import EnsembleDetector
from detectors.ewma import EWMADetector
from detectors.isolation import IsolationDetector
from detectors.robust import RobustDetector
from detectors.seasonal import SeasonalDetector

REGISTRY: dict[str, type[Detector]] = {
    k.name: k
    for k in (EWMADetector, RobustDetector, SeasonalDetector, CusumDetector, PageHinkleyDetector,
              IsolationDetector, EnsembleDetector)
}

DEFAULT = "ensemble"
"""The detector logtide runs in production."""


def build(name: str = DEFAULT, config: dict[str, Any] | None = None, **overrides: Any) -> Detector:
    """A fresh detector by registry name, with optional configuration (dict or keywords)."""
    try:
        klass = REGISTRY[name]
    except KeyError:
        raise ValueError(f"unknown detector {name!r}; known: {', '.join(sorted(REGISTRY))}") from None
    return klass(config, **overrides)


def from_bytes(data: bytes) -> Detector:
    """Restore any detector serialised with ``to_bytes``."""
    return Detector.from_bytes(data)


__all__ = ["DEFAULT", "REGISTRY", "Detector", "Score", "build", "from_bytes"]
