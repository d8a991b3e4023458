"""logtide detectors: streaming anomaly detectors, pure and deterministic, with serialisable state.

    det = detectors.build()                        # the production default, detectors.DEFAULT
    det = detectors.build("seasonal", {"periods": [[86400, 96]]})   # any detector, plain config
    s = det.update(ts_seconds, value)              # Score(score, expected, lower, upper)
    blob = det.to_bytes()                          # JSON + packed doubles, exact
    det = detectors.from_bytes(blob)               # same subsequent scores, bit for bit

One contract for every detector: ``update`` is one fused step (score the point against the past,
learn it, apply the alarm gate) and returns a new, immutable ``Score`` (a named tuple) that the
caller may keep. Detectors configured alike share one config object: treat ``det.config`` as
read-only.

``score`` is in [0, 1]: ``-log10(p) / 8`` where ``p`` is the calibrated tail probability of the
point (Bonferroni-corrected across the ensemble's tests), so one threshold means the same rate on
every series. Suggested thresholds: 0.5 to page (p = 1e-4), about 0.3 to flag (the
ensemble's gate opens an incident at 0.28; NAB's best threshold on its dev set is 0.287). ``expected`` and ``[lower, upper]`` are the forecast
and the band outside which the point test alone would reach 0.5; the band (ensemble, seasonal,
ewma, robust) is never narrower than the data's resolution (or 1 % of the level) and stays within
the domain seen (no negative bound for a series never negative, within [0, 1] for one that never
left it). Non-finite
values and timestamps score 0 and are not learned.

Detectors: ``ewma``, ``robust`` (rolling median/IQR), ``seasonal`` (daily/weekly profiles with model
selection), ``cusum``, ``page_hinkley``, ``context`` (novelty of quantised value sequences, after
contextOSE), ``isolation`` (isolation forest over feature vectors; pass a list of floats as the value
for multivariate use) and ``ensemble`` (the default: seasonal forecast with point, level, spread and
context tests).

NAB scores and the leave-one-category-out check: ``bench/nab_eval.py`` and ``bench/bench_detectors.py``; figures in README.md
(data and scorer supplied by flag).
"""

from __future__ import annotations

from typing import Any

from logtide.detectors.base import Detector, Score
from logtide.detectors.changepoint import CusumDetector, PageHinkleyDetector
from logtide.detectors.context import ContextDetector
from logtide.detectors.ensemble import EnsembleDetector
from logtide.detectors.ewma import EWMADetector
from logtide.detectors.isolation import IsolationDetector
from logtide.detectors.robust import RobustDetector
from logtide.detectors.seasonal import SeasonalDetector

REGISTRY: dict[str, type[Detector]] = {
    k.name: k
    for k in (EWMADetector, RobustDetector, SeasonalDetector, CusumDetector, PageHinkleyDetector,
              IsolationDetector, ContextDetector, EnsembleDetector)
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
