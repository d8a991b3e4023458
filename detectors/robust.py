"""Robust level and spread baseline: rolling median and interquartile spread.

Where the EWMA is dragged by outliers and bursts, the median of the last ``window`` points is not:
this is the detector for spiky series (load balancers, request counts) where a handful of extreme
points must not widen the band for everyone after them.
"""

from __future__ import annotations

import math
from bisect import bisect_left, insort
from dataclasses import dataclass
from typing import Any

from logtide.detectors.base import CommonConfig, Detector, Domain, Gate, Score, surprise_to_score
from logtide.detectors.calibration import TailCalibrator, TailConfig
from logtide.detectors.ewma import scale_floor

_finite = math.isfinite


@dataclass
class RobustConfig(CommonConfig):
    """``window``: points in the rolling median; the spread is the interquartile range / 1.349
    (a standard deviation for Gaussian noise); when the quartiles coincide (quantised series) the
    spread falls back to ``min_spread`` times the mean absolute deviation from the median."""

    window: int = 64
    min_spread: float = 1.0
    tail_z: float = 2.5
    tail_memory: float = 500.0


class RobustDetector(Detector):
    """Deviation from the rolling median in units of the rolling interquartile spread."""

    name = "robust"
    Config = RobustConfig

    def reset(self) -> None:
        c = self.config
        self._ring: list[float] = []
        self._pos = 0
        self._sorted: list[float] = []
        self._cal = TailCalibrator(TailConfig(z_q=c.tail_z, memory=c.tail_memory))
        self._gate = Gate(c)
        self._dom = Domain()
        self._p_band = 10.0 ** (-c.alarm * c.score_scale)

    def _center_scale(self) -> tuple[float, float]:
        s = self._sorted
        k = len(s)
        med = s[k // 2] if k % 2 else 0.5 * (s[k // 2 - 1] + s[k // 2])
        iqr = (s[(3 * k) // 4] - s[k // 4]) / 1.349
        return med, iqr

    def update(self, ts: float, value: float) -> Score:
        if not _finite(value):
            if not self._sorted:
                return Score(0.0, math.nan, math.nan, math.nan)
            med, _ = self._center_scale()
            return Score(0.0, med, med, med)
        c = self.config
        if not self._sorted:
            self._ring.append(value)
            self._sorted.append(value)
            self._gate(0.0)
            self._dom.learn(value)
            return Score(0.0, value, value, value)
        med, iqr = self._center_scale()
        s = self._sorted
        if iqr <= 0.0:  # quantised or near-constant window: fall back to the mean absolute deviation
            iqr = c.min_spread * sum(abs(v - med) for v in s) / len(s)
        scale = max(iqr, scale_floor(med))
        z = abs(value - med) / scale
        z = min(z, 1e9)
        cal = self._cal
        p = cal.tail(z)
        half = cal.inverse(self._p_band) * scale
        cal.learn(z)
        # slide the window
        if len(self._ring) < c.window:
            self._ring.append(value)
        else:
            old = self._ring[self._pos]
            del s[bisect_left(s, old)]
            self._ring[self._pos] = value
            self._pos = (self._pos + 1) % c.window
        insort(s, value)
        out = self._gate(surprise_to_score(p, c.score_scale))
        e, lo, hi = self._dom.band(med, med - half, med + half)
        self._dom.learn(value)
        return Score(out, e, lo, hi)

    def get_state(self) -> dict[str, Any]:
        # ring in chronological order; the sorted copy is rebuilt on load
        ring = self._ring[self._pos:] + self._ring[: self._pos]
        return {"r": [float(v) for v in ring], "cal": self._cal.get_state(), "g": self._gate.get_state(),
                "dm": self._dom.get_state()}

    def set_state(self, state: dict[str, Any]) -> None:
        self._ring = [float(v) for v in state["r"]]
        self._pos = 0
        self._sorted = sorted(self._ring)
        self._cal.set_state(state["cal"])
        self._gate.set_state(state["g"])
        self._dom.set_state(state.get("dm"))
