"""The ensemble: one forecaster, several tests on its residuals, one calibrated score.

This is the detector logtide runs in production (``detectors.DEFAULT``). Per point it

1. forecasts the value from the past with the seasonal/level ``Baseline`` (online model selection);
2. standardises the residual by the baseline's recent error, and runs three tests on it:
   - *point*: the size of the residual (spikes, dips, the first points of any change);
   - *shift*: a two-sided CUSUM of the residuals (level shifts, slow drift); a confirmed shift
     re-anchors the baseline on the new level;
   - *spread*: the log ratio of the recent residual variance to the long-run one (variance changes,
     a flatline after activity);
3. calibrates each test statistic into a tail probability on the series' own history (extreme value
   fit, ``calibration``), takes the smallest with a Bonferroni correction, and maps it onto [0, 1]
   on a log scale (score 0.5 = once in 10,000 normal points with the default scale);
4. gates the score: nothing during warm-up, then one alarm per incident (refractory period).

Everything is plain floats: about 30 numbers of state plus the seasonal profile.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

from detectors.base import CommonConfig, Detector, Gate, Score, surprise_to_score
from detectors.calibration import TailCalibrator, TailConfig
from detectors.changepoint import Cusum
from detectors.seasonal import Baseline, baseline_config

_finite = math.isfinite


@dataclass
class EnsembleConfig(CommonConfig):
    """Baseline settings (see ``seasonal.BaselineConfig``), the tests to run and their settings.

    ``tests``: any of "point", "shift", "spread"; ``k``/``h``: CUSUM allowance and decision level;
    ``alpha_short``: weight of the short-term residual variance of the spread test; ``smooth``: points
    averaged into the point statistic (1 = the point alone)."""

    periods: list[list[float]] = field(default_factory=lambda: [[86400.0, 96], [604800.0, 84]])
    alphas: list[float] = field(default_factory=lambda: [0.02, 0.3])
    alpha_hw: float = 0.002
    gamma: float = 0.2
    alpha_err: float = 0.02
    alpha_sel: float = 0.005
    clip: float = 4.0
    mode: str = "auto"
    tests: list[str] = field(default_factory=lambda: ["point", "level", "spread"])
    k: float = 0.5
    h: float = 8.0
    alpha_short: float = 0.1
    alpha_level: float = 0.001
    level_band: float = 3.0
    relearn: int = 200
    level_memory: float = 2000.0
    lik_window: int = 10
    lik_memory: float = 2000.0
    tail_z: float = 2.5
    tail_memory: float = 500.0
    guard: float = 0.0
    spread_guard: float = 1e-4
    warmup: int = 200
    watch: float = 0.3
    refractory: int = 100
    damp: float = 0.4


class EnsembleDetector(Detector):
    """Seasonal/level forecast, point + shift + spread tests, calibrated and combined."""

    name = "ensemble"
    Config = EnsembleConfig

    def reset(self) -> None:
        c = self.config
        self._base = Baseline(baseline_config(c))
        tc = TailConfig(z_q=c.tail_z, memory=c.tail_memory, guard=c.guard)
        self._use = (("point" in c.tests), ("shift" in c.tests), ("spread" in c.tests))
        self._use_lik = "likelihood" in c.tests
        self._use_models = "models" in c.tests
        self._use_level = "level" in c.tests or "drift" in c.tests
        self._use_drift = "drift" in c.tests
        self._dcs = Cusum(c.k, c.h)
        self._dcal = TailCalibrator(tc)
        tl = TailConfig(z_q=c.tail_z, memory=c.level_memory, memory_tail=c.level_memory / 10, guard=c.guard)
        self._lcal = [TailCalibrator(tl), TailCalibrator(tl)]
        self._lm = 0.0  # long-run mean and variance of the values themselves
        self._lv = 0.0
        self._ln = 0
        self._loc = 0  # consecutive points out of control
        nm = len(c.alphas) + len(c.periods)
        self._mcal = [TailCalibrator(tc) for _ in range(nm)] if self._use_models else []
        # the spread collapse (flatline) is never learned as normal: it only grows while it lasts
        ts_ = TailConfig(z_q=c.tail_z, memory=c.tail_memory, guard=max(c.guard, c.spread_guard))
        self._cal = [TailCalibrator(tc), TailCalibrator(tc), TailCalibrator(ts_)]
        self._bonf = float(max(1, sum(self._use) + self._use_lik + len(self._mcal) + self._use_level + self._use_drift))
        self._lik_ring = [0.0] * c.lik_window
        self._lik_pos = 0
        self._lik_sum = 0.0
        self._lik_n = 0
        self._lik_m = 0.0
        self._lik_v = 0.0
        self._cs = Cusum(c.k, c.h)
        self._vs = 1.0  # short-term mean squared standardised residual, for the spread test
        self._last = math.nan  # flatline: last value, current and longest run of repeats, changes seen
        self._run = 0
        self._max_run = 0
        self._moves = 0
        self._gate = Gate(c)
        self._p_band = 10.0 ** (-c.alarm * c.score_scale) / self._bonf
        self.last_raw = 0.0
        self.last_p = (1.0, 1.0, 1.0)

    def update(self, ts: float, value: float) -> Score:
        base = self._base
        if not (_finite(value) and _finite(ts)):
            e = base.expected
            return Score(0.0, e, e, e)
        exp = base.forecast(ts)
        if base._n == 0:
            base.learn(ts, value)
            self._gate(0.0)
            return Score(0.0, value, value, value)
        c = self.config
        scale = base.scale
        z = (value - exp) / scale
        if z > 1e6:
            z = 1e6
        elif z < -1e6:
            z = -1e6
        use_point, use_shift, use_spread = self._use
        cal = self._cal
        p = 1.0
        half = math.inf
        if use_point:
            za = abs(z)
            c0 = cal[0]
            p = c0.tail(za)
            half = c0.inverse(self._p_band) * scale
            c0.learn(za)
        if self._use_models:
            # every candidate model judges the point on its own error scale: the slow level sees a
            # gradual slide to unheard-of values that the fast one follows, the seasonal one a
            # missing peak that the level ones shrug off
            pred, err = base._pred, base._err
            for k, ck in enumerate(self._mcal):
                zk = abs(value - pred[k]) / max(err[k] * 1.2533, 1e-9 * (abs(pred[k]) + 1.0))
                zk = min(zk, 1e6)
                pk = ck.tail(zk)
                ck.learn(zk)
                p = min(p, pk)
        if self._use_level:
            # is the value itself unheard of (beyond the tails of the long-run value distribution)?
            ln = self._ln
            lm = self._lm
            sd = math.sqrt(self._lv)
            sd = max(sd, 1e-9 * (abs(lm) + 1.0))
            d = value - lm
            zl = d / sd
            up, dn = self._lcal
            inside = ln <= 50 or -c.level_band <= zl <= c.level_band
            if zl >= 0.0:
                pl = up.tail(zl)
                up.learn(zl)
                dn.learn(0.0)
            else:
                pl = dn.tail(-zl)
                dn.learn(-zl)
                up.learn(0.0)
            if self._use_drift and ln > 50:
                # slow drift: CUSUM of the value against the in-control reference
                stat, shifted = self._dcs.step(zl)
                cd = self._dcal
                pd = cd.tail(stat)
                cd.learn(stat)
                pl = min(pl, pd)
                if shifted:
                    self._lm, self._loc = value, 0
            p = min(p, pl)
            # the reference learns only while the value is in control (no boiling frog under a slow
            # drift); after ``relearn`` points in a row out of control the shift is confirmed and
            # the reference starts again from here
            if not inside:
                self._loc += 1
                if self._loc >= c.relearn:
                    self._lm, self._loc = value, 0
            else:
                self._loc = 0
                a = c.alpha_level if ln * c.alpha_level > 1.0 else 1.0 / (ln + 1)
                self._lm = lm + a * d
                self._lv = (1.0 - a) * (self._lv + a * d * d)
            self._ln = ln + 1
        shift = 0.0
        if use_shift:
            stat, shift = self._cs.step(z)
            c1 = cal[1]
            p1 = c1.tail(stat)
            c1.learn(stat)
            p = min(p, p1)
        if use_spread:
            # a collapse of the spread: recent mean squared standardised residual, on a log scale
            zc = z if -10.0 < z < 10.0 else (10.0 if z > 0 else -10.0)
            vs = self._vs + c.alpha_short * (zc * zc - self._vs)
            self._vs = vs
            stat = -math.log(vs) if vs > 1e-20 else 46.0
            stat = max(stat, 0.0)
            c2 = cal[2]
            p2 = c2.tail(stat)
            c2.learn(stat, p2)
            # a flatline after activity: the series repeats one value exactly for longer than any
            # run of repeats it ever had; twice as long is a 1-in-16 event, ten times 1-in-10,000
            if value == self._last:
                run = self._run + 1
                self._run = run
                if self._moves > 10 and run > 10:
                    ratio = run / (self._max_run + 1.0)
                    if ratio > 1.0:
                        pf = ratio ** -4.0
                        p2 = min(p2, pf)
            else:
                self._max_run = max(self._max_run, self._run)
                self._run = 0
                self._moves += 1
                self._last = value
            p = min(p, p2)
        if self._use_lik:
            # Numenta's anomaly likelihood: is the recent average of point surprises unusually high
            # for this series? Catches sustained changes no single point reveals.
            praw = 1.0 - cal[0].tail(abs(z)) if use_point else 0.0
            ring = self._lik_ring
            pos = self._lik_pos
            self._lik_sum += praw - ring[pos]
            ring[pos] = praw
            self._lik_pos = (pos + 1) % len(ring)
            avg = self._lik_sum / len(ring)
            ln = self._lik_n + 1
            self._lik_n = ln
            am = 1.0 / c.lik_memory if ln > c.lik_memory else 1.0 / ln
            if ln > 2 * len(ring):
                sd = math.sqrt(self._lik_v) if self._lik_v > 1e-12 else 1e-6
                pl = 0.5 * math.erfc((avg - self._lik_m) / sd * 0.7071067811865476)
                p = min(p, pl)
            d = avg - self._lik_m
            self._lik_m += am * d
            self._lik_v = (1.0 - am) * (self._lik_v + am * d * d)
        p *= self._bonf
        base.learn(ts, value)
        if shift:
            base.relearn(exp + shift * scale)
        raw = surprise_to_score(p, c.score_scale)
        self.last_raw = raw
        s = self._gate(raw)
        return Score(s, exp, exp - half, exp + half)

    def get_state(self) -> dict[str, Any]:
        return {"b": self._base.get_state(), "cal": [k.get_state() for k in self._cal],
                "mcal": [k.get_state() for k in self._mcal],
                "lv": [self._ln, self._lm, self._lv, self._lcal[0].get_state(), self._lcal[1].get_state(),
                       self._loc, self._dcs.get_state(), self._dcal.get_state()],
                "cs": self._cs.get_state(), "vs": [self._vs, self._last, self._run, self._max_run, self._moves], "g": self._gate.get_state(),
                "lk": [self._lik_ring, self._lik_pos, self._lik_sum, self._lik_n, self._lik_m, self._lik_v]}

    def set_state(self, state: dict[str, Any]) -> None:
        self._base.set_state(state["b"])
        for k, s in zip(self._cal, state["cal"], strict=True):
            k.set_state(s)
        for k, s in zip(self._mcal, state["mcal"], strict=True):
            k.set_state(s)
        lv = state["lv"]
        self._ln, self._lm, self._lv = int(lv[0]), float(lv[1]), float(lv[2])
        self._lcal[0].set_state(lv[3])
        self._lcal[1].set_state(lv[4])
        self._loc = int(lv[5])
        self._dcs.set_state(lv[6])
        self._dcal.set_state(lv[7])
        self._cs.set_state(state["cs"])
        vs = state["vs"]
        self._vs, self._last = float(vs[0]), float(vs[1])
        self._run, self._max_run, self._moves = int(vs[2]), int(vs[3]), int(vs[4])
        lk = state["lk"]
        self._lik_ring = [float(v) for v in lk[0]]
        self._lik_pos, self._lik_sum, self._lik_n = int(lk[1]), float(lk[2]), int(lk[3])
        self._lik_m, self._lik_v = float(lk[4]), float(lk[5])
        self._gate.set_state(state["g"])
