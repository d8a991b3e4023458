"""Calibration: turn a raw anomaly statistic into a tail probability, per series.

Raw statistics (a z-score, a CUSUM sum, an isolation depth) mean different things on different
series: a 4-sigma deviation is routine on a heavy-tailed ad-exchange price and unheard of on a
thermometer. ``TailCalibrator`` learns, online, the upper tail of the statistic's own history with
the peaks-over-threshold method of extreme value theory (as in SPOT/DSPOT, Siffer et al., KDD 2017):
a running high threshold ``u`` (``u_mult`` times the recent mean of the statistic, winsorised, so it
adapts as fast up as down), the running rate ``r`` at which it is exceeded, and a
generalised Pareto fit (method of moments) of the excesses over ``u``, each excess winsorised at
``excess_clip`` times their running mean (a burst of extreme statistics would otherwise widen the tail
for hundreds of excesses, so that the same burst hours later scores low; the first 10 excesses have no
mean to compare with and are learned as they are). The tail probability of a new value is then ``r * (1 + xi * (x - u) / sigma) ** (-1 / xi)``, which extrapolates smoothly beyond
anything seen so far. One threshold on that probability means the same rate of false alarms on every series.
"""

# ruff: noqa: PLR1730  (per-point paths compare and assign: min()/max() calls cost more)

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

from logtide.detectors.base import shared

_TINY = 1e-300


@dataclass
class TailConfig:
    """``z_q``: the threshold is ``z_q`` times the recent mean statistic (2.5: about the 95th
    percentile of an absolute Gaussian deviation); ``memory``: statistics (for the threshold) and excesses (for the
    tail fit) remembered, with exponential forgetting; ``xi_max``: cap on the tail heaviness;
    ``warmup``: statistics seen before probabilities are trusted (p = 1 before); ``skip``: first
    statistics ignored (a baseline's first few verdicts, before it has any spread, are noise);
    ``guard``: statistics whose tail probability is below it are not learned (an anomaly must not
    teach the calibration that anomalies are normal, as in DSPOT); ``excess_clip``: an excess is
    learned as at most this many times the mean excess so far (0: not clipped), after the first 10."""

    z_q: float = 2.5
    memory: float = 500.0
    memory_tail: float = 200.0
    xi_max: float = 0.5
    warmup: int = 30
    skip: int = 10
    guard: float = 0.0
    excess_clip: float = 5.0


class TailCalibrator:
    """Online generalised-Pareto tail model of a non-negative statistic; see module docstring."""

    __slots__ = ("_a", "_at", "_cfg", "_ex", "_ex2", "_guard", "_l1", "_n", "_ne", "_rate", "_sig", "_skip",
                 "_u", "_warm", "_xclip", "_xi", "_ximax", "_zq")

    def __init__(self, config: TailConfig | None = None) -> None:
        self._cfg = config or TailConfig()
        # the settings read per point, as slots (the same objects as the config's: no extra memory)
        self._zq = self._cfg.z_q
        self._warm = self._cfg.warmup
        self._skip = self._cfg.skip
        self._guard = self._cfg.guard
        self._ximax = self._cfg.xi_max
        self._xclip = self._cfg.excess_clip
        self._n = 0  # statistics seen
        self._ne = 0  # excesses seen
        self._l1 = 0.0  # recent mean of the statistic (winsorised)
        self._u = 0.0  # threshold
        self._rate = 0.05  # rate of exceedance of the threshold
        self._ex = 0.0  # mean excess over u
        self._ex2 = 0.0  # mean squared excess over u
        self._xi = 0.0
        self._sig = 1.0
        self._a = shared(1.0 / self._cfg.memory)
        self._at = shared(1.0 / self._cfg.memory_tail)

    @property
    def ready(self) -> bool:
        return self._n >= self._cfg.warmup and self._ne >= 3

    def tail(self, x: float) -> float:
        """Probability that the statistic is at least ``x``, judged on the past only."""
        if self._n < self._warm or self._ne < 3:
            return 1.0
        u = self._u
        r = self._rate
        if x <= u:
            # Below the modelled tail: interpolate log-linearly towards p = 1 at x = 0.
            return 1.0 if x <= 0.0 else r ** (x / u)
        y = (x - u) / self._sig
        xi = self._xi
        p = (r * math.exp(-y) if y < 700 else 0.0) if xi < 1e-6 else r * (1.0 + xi * y) ** (-1.0 / xi)
        return p if p > _TINY else _TINY

    def inverse(self, p: float) -> float:
        """The statistic value whose tail probability is ``p`` (for expected bands)."""
        if not self.ready:
            return math.inf
        u = self._u
        r = self._rate
        if p >= r:
            return u * math.log(p) / math.log(r) if p < 1.0 else 0.0
        xi = self._xi
        if xi < 1e-6:
            return u + self._sig * math.log(r / p)
        return u + self._sig / xi * ((p / r) ** (-xi) - 1.0)

    def learn_zero(self) -> None:
        """``learn(0.0)``, faster (the level test feeds a zero to the tail on the other side)."""
        n = self._n + 1
        self._n = n
        n -= self._skip
        if n <= 0:
            return
        a = self._a
        if not n * a > 1.0:
            a = 1.0 / n
        self._rate += a * (0.0 - self._rate)
        m = self._l1
        m += a * (0.0 - m)
        self._l1 = m
        self._u = self._zq * m

    def learn(self, x: float, p: float = -1.0) -> None:
        """Add one statistic to the history; ``p``: its tail probability if already computed."""
        guard = self._guard
        if guard > 0.0:
            if p < 0.0:
                p = self.tail(x)
            if p < guard:
                return
        n = self._n + 1
        self._n = n
        n -= self._skip
        if n <= 0:
            return
        a = self._a
        if not n * a > 1.0:
            a = 1.0 / n
        u = self._u
        if x > u and n > 1:
            self._rate += a * (1.0 - self._rate)
            self.excess(x - u, u)
        else:
            self._rate += a * (0.0 - self._rate)
        m = self._l1
        xw = 10.0 * m if n > 10 and x > 10.0 * m > 0.0 else x  # winsorised: one outlier moves u little
        m += a * (xw - m)
        self._l1 = m
        self._u = self._zq * m

    def excess(self, e: float, u: float) -> None:
        """The tail fit's part of ``learn``, when the statistic exceeds the threshold ``u`` by ``e``."""
        ne = self._ne
        m = self._ex
        if ne > 10:
            cap = self._xclip * m
            if e > cap > 0.0:  # winsorised: one burst moves the fit little
                e = cap
        ne += 1
        self._ne = ne
        at = self._at
        if not ne * at > 1.0:
            at = 1.0 / ne
        m += at * (e - m)
        self._ex = m
        v = self._ex2
        v += at * (e * e - v)
        self._ex2 = v
        v = v - m * m
        if v > 1e-300 and m > 0.0:
            xi = 0.5 * (1.0 - m * m / v)
            if xi < 0.0:
                xi = 0.0
            else:
                xm = self._ximax
                if xm < xi:
                    xi = xm
            self._xi = xi
            sig = m * (1.0 - xi)
            lo = 1e-12 * (u + 1e-12)
            self._sig = lo if lo > sig else sig
        elif m > 0.0:
            self._xi = 0.0
            self._sig = m

    def get_state(self) -> list[Any]:
        return [self._n, self._ne, self._l1, self._u, self._rate, self._ex, self._ex2, self._xi, self._sig]

    def set_state(self, state: list[Any]) -> None:
        if len(state) == 10:  # written before the unused slot after ``_l1`` was dropped
            state = [*state[:3], *state[4:]]
        self._n, self._ne = int(state[0]), int(state[1])
        (self._l1, self._u, self._rate, self._ex, self._ex2, self._xi, self._sig) = (float(v) for v in state[2:9])
