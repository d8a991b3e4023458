"""Seasonal baseline: daily (and optionally weekly) profiles, so a normal morning peak is expected.

``Baseline`` is an online forecaster that runs a few cheap candidate models side by side and uses
whichever has been forecasting best lately (online model selection on the exponentially weighted
absolute error):

- two level models (exponentially weighted means, slow and fast), for series without a rhythm;
- one additive Holt-Winters model per configured period (daily by default, weekly on request):
  a level plus a seasonal profile of ``buckets`` values indexed by the time of day (or week) of the
  timestamp, linearly interpolated between buckets so irregular sampling is fine.

A seasonal model is only eligible once a full period has been seen, and only wins when its error
is lower than the level models': that is the detection of seasonality. ``mode="always"`` forces the
first seasonal model, ``mode="never"`` disables them. Learning is winsorised at ``clip`` spreads so
that an anomaly does not become the new normal; ``relearn`` re-anchors the level after a confirmed
level shift (see ``changepoint``).
"""

from __future__ import annotations

import math
from array import array
from dataclasses import dataclass, field
from typing import Any

from logtide.detectors.base import CommonConfig, Detector, Domain, Gate, Score, shared, surprise_to_score
from logtide.detectors.calibration import TailCalibrator, TailConfig

_SD_PER_MAE = 1.2533141373155  # standard deviation / mean absolute deviation for Gaussian noise

_finite = math.isfinite


@dataclass
class BaselineConfig:
    """``periods``: seasonal periods in seconds with their bucket counts; ``alphas``: level-model
    weights; ``alpha_hw``/``gamma``: Holt-Winters level and profile weights; ``alpha_err``: weight of
    the error average used both to pick the model and as the spread; ``clip``: winsorisation."""

    periods: list[list[float]] = field(default_factory=lambda: [[86400.0, 96], [604800.0, 84]])
    alphas: list[float] = field(default_factory=lambda: [0.02, 0.3])
    alpha_hw: float = 0.002
    gamma: float = 0.2
    alpha_err: float = 0.02
    alpha_sel: float = 0.005
    clip: float = 4.0
    mode: str = "auto"


class Baseline:
    """Online forecaster with model selection; ``forecast(ts)`` then ``learn(value)``."""

    __slots__ = (
        "_ae",
        "_ahw",
        "_al",
        "_asel",
        "_buck",
        "_clip",
        "_err",
        "_f",
        "_g",
        "_i",
        "_jp",
        "_kl",
        "_lev",
        "_mode",
        "_n",
        "_nl",
        "_per",
        "_pred",
        "_prof",
        "_sel",
        "_t0",
        "_tl",
        "best",
        "expected",
        "scale",
    )

    def __init__(self, cfg: BaselineConfig | None = None) -> None:
        cfg = cfg or BaselineConfig()
        self._al = shared(tuple(float(a) for a in cfg.alphas))
        self._per = shared(tuple(float(p[0]) for p in cfg.periods))
        self._buck = shared(tuple(int(p[1]) for p in cfg.periods))
        self._ahw = cfg.alpha_hw
        self._g = cfg.gamma
        self._ae = cfg.alpha_err
        self._asel = cfg.alpha_sel
        self._clip = cfg.clip
        self._mode = cfg.mode
        self._nl = len(self._al)
        self._kl = shared(tuple(range(self._nl)))  # the loop indices, built once per worker (hot path)
        self._jp = shared(tuple(range(len(self._per))))
        m = self._nl + len(self._per)
        self._n = 0
        self._t0 = math.nan
        self._tl = math.nan
        self._lev = [0.0] * m  # level of every model
        self._prof = [array("d", bytes(8 * b)) for b in self._buck]  # compact: 8 bytes a bucket
        self._err = [0.0] * m
        self._sel = [0.0] * m  # long-memory mean squared error, for the model choice
        self._pred = [0.0] * m
        self._i = [0] * len(self._per)
        self._f = [0.0] * len(self._per)
        self.best = 0
        self.expected = math.nan
        self.scale = math.nan

    def forecast(self, ts: float) -> float:
        """Expected value at ``ts`` from the past; also sets ``expected``, ``scale`` and ``best``."""
        lev = self._lev
        pred = self._pred
        sel = self._sel
        best = 0
        be = sel[0]
        for k in self._kl:
            pred[k] = lev[k]
            sk = sel[k]
            if sk < be:
                best = k
                be = sk
        per_ = self._per
        if per_:
            mode = self._mode
            span = ts - self._t0 if self._n > 0 and mode != "never" else -1.0
            always = mode == "always"
            buck = self._buck
            profs = self._prof
            pi = self._i
            pf = self._f
            k = self._nl
            for j in self._jp:
                per = per_[j]
                b = buck[j]
                prof = profs[j]
                ph = (ts % per) / per * b
                i = int(ph)
                if i >= b:
                    i = b - 1
                f = ph - i
                pi[j] = i
                pf[j] = f
                a0 = prof[i]
                pred[k] = lev[k] + a0 + f * (prof[i + 1 if i + 1 < b else 0] - a0)
                sk = sel[k]
                if span >= per and (sk < be or (always and j == 0)):
                    best = k
                    be = sk
                    always = False
                k += 1
        self.best = best
        x = pred[best]
        self.expected = x
        s = self._err[best] * _SD_PER_MAE
        floor = 1e-9 * ((x if x > 0.0 else -x) + 1.0)
        self.scale = s if s > floor else floor
        return x

    def learn(self, ts: float, value: float) -> None:
        """Learn ``value`` (call after ``forecast``), winsorised around each model's forecast."""
        n = self._n
        lev = self._lev
        pred = self._pred
        err = self._err
        sel = self._sel
        if n == 0:
            for k in range(len(lev)):
                lev[k] = value
            self._t0 = ts
            self._n = 1
            return
        clip = self._clip * _SD_PER_MAE if n > 10 else math.inf
        inv = 1.0 / (n + 1)
        ae = self._ae
        if not n * ae > 1.0:
            ae = inv
        asel = self._asel
        if not n * asel > 1.0:
            asel = inv
        nl = self._nl
        al = self._al
        for k in self._kl:  # level models
            e = value - pred[k]
            ea = e if e >= 0.0 else -e
            ek = err[k]
            lim = clip * ek + 1e-300
            if ea > lim:
                e = lim if e > 0 else -lim
                ea = lim
            err[k] = ek + ae * (ea - ek)
            sk = sel[k]
            sel[k] = sk + asel * (ea * ea - sk)
            a = al[k]
            lev[k] += (a if n * a >= 1.0 else inv) * e
        per_ = self._per
        if per_:
            # seasonal models: a slow offset plus a profile of the values per bucket (split between
            # the two neighbouring buckets); the first periods are copied in (1/cycles seen),
            # later ones blended with gamma
            a_hw = self._ahw
            if not n * a_hw > 1.0:
                a_hw = inv
            g0 = self._g
            age = ts - self._t0
            buck = self._buck
            profs = self._prof
            pi = self._i
            pf = self._f
            k = nl
            for j in self._jp:
                pk = pred[k]
                e = value - pk
                ea = e if e >= 0.0 else -e
                ek = err[k]
                lim = clip * ek + 1e-300
                if ea > lim:
                    e = lim if e > 0 else -lim
                    ea = lim
                err[k] = ek + ae * (ea - ek)
                sk = sel[k]
                sel[k] = sk + asel * (ea * ea - sk)
                lk = lev[k] + a_hw * e
                lev[k] = lk
                x = pk + e - lk  # the (winsorised) value, net of the new offset
                cycles = age / per_[j]
                g = g0 if cycles * g0 >= 1.0 else 1.0 / (1.0 + int(cycles))
                prof = profs[j]
                i = pi[j]
                f = pf[j]
                i2 = i + 1 if i + 1 < buck[j] else 0
                prof[i] += g * (1.0 - f) * (x - prof[i])
                prof[i2] += g * f * (x - prof[i2])
                k += 1
        self._n = n + 1

    def relearn(self, level: float) -> None:
        """Re-anchor every model on a new level after a confirmed shift (profiles are kept)."""
        nl = self._nl
        for k in range(len(self._lev)):
            if k < nl:
                self._lev[k] = level
            else:
                j = k - nl
                prof = self._prof[j]
                i, f = self._i[j], self._f[j]
                s = (1.0 - f) * prof[i] + f * prof[(i + 1) % self._buck[j]]
                self._lev[k] = level - s

    def get_state(self) -> list[Any]:
        return [self._n, self._t0, list(self._lev), [list(p) for p in self._prof], list(self._err),
                list(self._sel)]

    def set_state(self, state: list[Any]) -> None:
        self._n = int(state[0])
        self._t0 = float(state[1])
        self._lev = [float(v) for v in state[2]]
        self._prof = [array("d", [float(v) for v in p]) for p in state[3]]
        self._err = [float(v) for v in state[4]]
        self._sel = [float(v) for v in state[5]]


@dataclass
class SeasonalConfig(CommonConfig):
    """Baseline settings (see ``BaselineConfig``) plus the calibration of the deviation."""

    periods: list[list[float]] = field(default_factory=lambda: [[86400.0, 96], [604800.0, 84]])
    alphas: list[float] = field(default_factory=lambda: [0.02, 0.3])
    alpha_hw: float = 0.002
    gamma: float = 0.2
    alpha_err: float = 0.02
    alpha_sel: float = 0.005
    clip: float = 4.0
    mode: str = "auto"
    tail_z: float = 2.5
    tail_memory: float = 500.0


def baseline_config(c: Any) -> BaselineConfig:
    """The ``BaselineConfig`` part of a detector config."""
    return BaselineConfig(periods=c.periods, alphas=c.alphas, alpha_hw=c.alpha_hw, gamma=c.gamma,
                          alpha_err=c.alpha_err, alpha_sel=c.alpha_sel, clip=c.clip, mode=c.mode)


class SeasonalDetector(Detector):
    """Deviation from the best of the level and seasonal forecasts, in units of its recent error."""

    name = "seasonal"
    Config = SeasonalConfig

    def reset(self) -> None:
        c = self.config
        self._base = Baseline(baseline_config(c))
        self._cal = TailCalibrator(TailConfig(z_q=c.tail_z, memory=c.tail_memory))
        self._gate = Gate(c)
        self._dom = Domain()
        self._p_band = shared(10.0 ** (-c.alarm * c.score_scale))

    def update(self, ts: float, value: float) -> Score:
        base = self._base
        if not (_finite(value) and _finite(ts)):
            e = base.expected
            return Score(0.0, e, e, e)
        exp = base.forecast(ts)
        if base._n == 0:
            base.learn(ts, value)
            self._gate(0.0)
            self._dom.learn(value)
            return Score(0.0, value, value, value)
        scale = base.scale
        z = abs(value - exp) / scale
        z = min(z, 1e9)
        cal = self._cal
        p = cal.tail(z)
        half = cal.inverse(self._p_band) * scale
        cal.learn(z)
        base.learn(ts, value)
        s = self._gate(surprise_to_score(p, self.config.score_scale))
        e, lo, hi = self._dom.band(exp, exp - half, exp + half)
        self._dom.learn(value)
        return Score(s, e, lo, hi)

    def get_state(self) -> dict[str, Any]:
        return {"b": self._base.get_state(), "cal": self._cal.get_state(), "g": self._gate.get_state(),
                "dm": self._dom.get_state()}

    def set_state(self, state: dict[str, Any]) -> None:
        self._base.set_state(state["b"])
        self._cal.set_state(state["cal"])
        self._gate.set_state(state["g"])
        self._dom.set_state(state.get("dm"))
