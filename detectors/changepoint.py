"""Drift and change points: CUSUM and Page-Hinkley.

A point detector sees a level shift only at its first points, then the baseline follows it; a slow
drift it never sees at all. These tests accumulate small standardised deviations from a reference
level, so a sustained shift of even half a standard deviation stands out after a few dozen points.
When the accumulated evidence passes ``h`` (``lam``) the shift is confirmed: the reference is
re-learned from the points since the change began, and the test starts afresh.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

from logtide.detectors.base import CommonConfig, Detector, Gate, Score, surprise_to_score
from logtide.detectors.calibration import TailCalibrator, TailConfig
from logtide.detectors.ewma import scale_floor

_finite = math.isfinite


def arl_tail(stat: float, k: float) -> float:
    """Chance that an in-control CUSUM/Page-Hinkley statistic reaches ``stat``: 1 / average run
    length, with Siegmund's approximation for Gaussian noise (a calibration that needs no history)."""
    b = 2.0 * k * (stat + 1.166)
    if b > 700.0:
        return 1e-300
    arl = (math.exp(b) - b - 1.0) / (2.0 * k * k)
    return 1.0 if arl <= 1.0 else 1.0 / arl


class Cusum:
    """Two-sided tabular CUSUM on a standardised stream (Page 1954); ``k`` is the allowance
    (half the smallest shift worth catching, in standard deviations) and ``h`` the decision level."""

    __slots__ = ("_h", "_k", "hi", "lo", "n_hi", "n_lo", "s_hi", "s_lo")

    def __init__(self, k: float = 0.5, h: float = 8.0) -> None:
        self._k = k
        self._h = h
        self.hi = 0.0  # upper sum
        self.lo = 0.0  # lower sum
        self.n_hi = 0  # points since the upper sum was last zero
        self.n_lo = 0
        self.s_hi = 0.0  # sum of z over those points
        self.s_lo = 0.0

    def step(self, z: float) -> tuple[float, float]:
        """Add one standardised deviation; returns (statistic, mean z of the run if confirmed else 0).

        The statistic is the larger of the two sums; a confirmed shift resets both sums and returns
        the mean deviation since the change began, to re-anchor the baseline.
        """
        k = self._k
        hi = self.hi + z - k
        if hi > 0.0:
            self.n_hi += 1
            self.s_hi += z
        else:
            hi, self.n_hi, self.s_hi = 0.0, 0, 0.0
        lo = self.lo - z - k
        if lo > 0.0:
            self.n_lo += 1
            self.s_lo += z
        else:
            lo, self.n_lo, self.s_lo = 0.0, 0, 0.0
        self.hi, self.lo = hi, lo
        stat = hi if hi > lo else lo
        if stat > self._h:
            shift = self.s_hi / self.n_hi if hi > lo else self.s_lo / self.n_lo
            self.hi = self.lo = self.s_hi = self.s_lo = 0.0
            self.n_hi = self.n_lo = 0
            return stat, shift
        return stat, 0.0

    def get_state(self) -> list[Any]:
        return [self.hi, self.lo, self.n_hi, self.n_lo, self.s_hi, self.s_lo]

    def set_state(self, s: list[Any]) -> None:
        self.hi, self.lo = float(s[0]), float(s[1])
        self.n_hi, self.n_lo = int(s[2]), int(s[3])
        self.s_hi, self.s_lo = float(s[4]), float(s[5])


@dataclass
class CusumConfig(CommonConfig):
    """``k``, ``h``: CUSUM allowance and decision level in standard deviations; ``alpha``: weight
    of new points in the reference mean and variance while in control (slow, so drift shows)."""

    k: float = 0.5
    h: float = 10.0
    alpha: float = 0.005
    tail_z: float = 2.5
    tail_memory: float = 500.0


class _RefDetector(Detector):
    """Shared parts of the change detectors: a slow reference mean/variance and the calibration."""

    def _reset_ref(self) -> None:
        c = self.config
        self._n = 0
        self._mean = 0.0
        self._var = 0.0
        self._cal = TailCalibrator(TailConfig(z_q=c.tail_z, memory=c.tail_memory))
        self._gate = Gate(c)

    def _ref_step(self, value: float) -> tuple[float, float]:
        """Standardised deviation from the reference, and the spread; learns the reference."""
        n = self._n
        mean = self._mean
        scale = max(math.sqrt(self._var), scale_floor(mean))
        z = (value - mean) / scale
        if z > 1e6:
            z = 1e6
        elif z < -1e6:
            z = -1e6
        a = self.config.alpha if n * self.config.alpha > 1.0 else 1.0 / (n + 1)
        d = value - mean
        if n > 10 and abs(d) > 4.0 * scale:  # winsorised, as for the baselines
            d = 4.0 * scale if d > 0 else -4.0 * scale
        self._mean = mean + a * d
        self._var = (1.0 - a) * (self._var + a * d * d)
        self._n = n + 1
        return z, scale

    def _ref_state(self) -> list[Any]:
        return [self._n, self._mean, self._var, self._cal.get_state(), self._gate.get_state()]

    def _ref_load(self, s: list[Any]) -> None:
        self._n, self._mean, self._var = int(s[0]), float(s[1]), float(s[2])
        self._cal.set_state(s[3])
        self._gate.set_state(s[4])


class CusumDetector(_RefDetector):
    """CUSUM against a slowly learned reference; re-learns the reference after a confirmed shift."""

    name = "cusum"
    Config = CusumConfig

    def reset(self) -> None:
        self._reset_ref()
        self._cs = Cusum(self.config.k, self.config.h)

    def update(self, ts: float, value: float) -> Score:
        mean = self._mean
        if not _finite(value):
            return Score(0.0, mean, mean, mean)
        if self._n == 0:
            self._ref_step(value)
            self._gate(0.0)
            return Score(0.0, value, value, value)
        z, scale = self._ref_step(value)
        stat, shift = self._cs.step(z)
        p = arl_tail(stat, self.config.k)
        if shift:
            self._mean = mean + shift * scale
        s = self._gate(surprise_to_score(p, self.config.score_scale))
        band = (self.config.h + self.config.k) * scale
        return Score(s, mean, mean - band, mean + band)

    def get_state(self) -> dict[str, Any]:
        return {"r": self._ref_state(), "c": self._cs.get_state()}

    def set_state(self, state: dict[str, Any]) -> None:
        self._ref_load(state["r"])
        self._cs.set_state(state["c"])


@dataclass
class PageHinkleyConfig(CommonConfig):
    """``delta``: magnitude of change tolerated, ``lam``: decision level, both in standard
    deviations; ``alpha``: weight of new points in the reference while in control."""

    delta: float = 0.5
    lam: float = 10.0
    alpha: float = 0.005
    tail_z: float = 2.5
    tail_memory: float = 500.0


class PageHinkleyDetector(_RefDetector):
    """Two-sided Page-Hinkley test (Page 1954; Hinkley 1971) against a slowly learned reference."""

    name = "page_hinkley"
    Config = PageHinkleyConfig

    def reset(self) -> None:
        self._reset_ref()
        self._up = 0.0  # cumulative sum of (z - delta), and its running minimum
        self._up_min = 0.0
        self._dn = 0.0
        self._dn_min = 0.0
        self._run = 0  # points since the last reset, and the sum of z over them
        self._zsum = 0.0

    def update(self, ts: float, value: float) -> Score:
        mean = self._mean
        if not _finite(value):
            return Score(0.0, mean, mean, mean)
        c = self.config
        if self._n == 0:
            self._ref_step(value)
            self._gate(0.0)
            return Score(0.0, value, value, value)
        z, scale = self._ref_step(value)
        self._up += z - c.delta
        self._up_min = min(self._up_min, self._up)
        self._dn += -z - c.delta
        self._dn_min = min(self._dn_min, self._dn)
        self._run += 1
        self._zsum += z
        stat = max(self._up - self._up_min, self._dn - self._dn_min)
        p = arl_tail(stat, c.delta)
        if stat > c.lam:
            self._mean = mean + (self._zsum / self._run) * scale
            self._up = self._up_min = self._dn = self._dn_min = 0.0
            self._run, self._zsum = 0, 0.0
        elif self._up == self._up_min and self._dn == self._dn_min:
            self._run, self._zsum = 0, 0.0
        s = self._gate(surprise_to_score(p, c.score_scale))
        band = c.lam * scale
        return Score(s, mean, mean - band, mean + band)

    def get_state(self) -> dict[str, Any]:
        return {"r": self._ref_state(),
                "p": [self._up, self._up_min, self._dn, self._dn_min, self._run, self._zsum]}

    def set_state(self, state: dict[str, Any]) -> None:
        self._ref_load(state["r"])
        p = state["p"]
        self._up, self._up_min, self._dn, self._dn_min = (float(v) for v in p[:4])
        self._run, self._zsum = int(p[4]), float(p[5])
