"""Level and spread baseline: exponentially weighted mean and variance.

The cheapest baseline there is (a few float operations per point, five numbers of state), and the
right one for series without a daily rhythm: it follows slow changes of level and noise, and the
deviation of a new point from it, in units of the learned spread, is calibrated into a tail
probability per series (see ``calibration``).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

from logtide.detectors.base import CommonConfig, Detector, Domain, Gate, Score, surprise_to_score
from logtide.detectors.calibration import TailCalibrator, TailConfig

_finite = math.isfinite


@dataclass
class EWMAConfig(CommonConfig):
    """``alpha``: weight of a new point in the mean; ``alpha_var``: in the variance; ``clip``: a point
    is learned winsorised at ``clip`` standard deviations, so one spike does not drag the baseline."""

    alpha: float = 0.02
    alpha_var: float = 0.02
    clip: float = 5.0
    tail_z: float = 2.5
    tail_memory: float = 500.0


def scale_floor(level: float) -> float:
    """Smallest spread we believe in: keeps constant series finite without hiding real changes."""
    return 1e-9 * (abs(level) + 1.0)


class EWMADetector(Detector):
    """Deviation from an exponentially weighted mean, in units of the weighted standard deviation."""

    name = "ewma"
    Config = EWMAConfig

    def reset(self) -> None:
        c = self.config
        self._n = 0
        self._mean = 0.0
        self._var = 0.0
        self._cal = TailCalibrator(TailConfig(z_q=c.tail_z, memory=c.tail_memory))
        self._gate = Gate(c)
        self._dom = Domain()
        self._p_band = 10.0 ** (-c.alarm * c.score_scale)

    def update(self, ts: float, value: float) -> Score:
        mean = self._mean
        if not _finite(value):
            return Score(0.0, mean, mean, mean)
        c = self.config
        n = self._n
        if n == 0:
            self._mean = value
            self._n = 1
            self._gate(0.0)
            self._dom.learn(value)
            return Score(0.0, value, value, value)
        sd = math.sqrt(self._var)
        scale = max(sd, scale_floor(mean))
        dev = value - mean
        z = abs(dev) / scale
        z = min(z, 1e9)
        cal = self._cal
        p = cal.tail(z)
        half = cal.inverse(self._p_band) * scale
        cal.learn(z)
        # learn, winsorised
        lim = c.clip * scale
        if n > 10 and abs(dev) > lim:
            dev = lim if dev > 0 else -lim
        a = c.alpha if n * c.alpha > 1.0 else 1.0 / (n + 1)
        av = c.alpha_var if n * c.alpha_var > 1.0 else 1.0 / (n + 1)
        self._mean = mean + a * dev
        self._var = (1.0 - av) * (self._var + av * dev * dev)
        self._n = n + 1
        s = self._gate(surprise_to_score(p, c.score_scale))
        e, lo, hi = self._dom.band(mean, mean - half, mean + half)
        self._dom.learn(value)
        return Score(s, e, lo, hi)

    def get_state(self) -> dict[str, Any]:
        return {"n": self._n, "m": self._mean, "v": self._var, "cal": self._cal.get_state(), "dm": self._dom.get_state(),
                "g": self._gate.get_state()}

    def set_state(self, state: dict[str, Any]) -> None:
        self._n = int(state["n"])
        self._mean = float(state["m"])
        self._var = float(state["v"])
        self._cal.set_state(state["cal"])
        self._gate.set_state(state["g"])
        self._dom.set_state(state.get("dm"))
