"""The ensemble: one forecaster, a few tests, one calibrated score. The production default.

Per point, judged on the past only, then learned:

1. ``Baseline`` (``seasonal``) forecasts the value: level models and daily/weekly profiles, the one
   forecasting best lately wins. The residual is standardised by that model's recent error.
2. Tests, each turning one statistic into a tail probability on the series' own history
   (``calibration``: extreme value fit), so they are comparable whatever the unit and noise:
   - ``point``: size of the standardised residual (spikes, dips, the first points of any change,
     a missing daily peak);
   - ``level``: the value against the long-run distribution of the values themselves, upper and
     lower tail apart (a slide to values never seen, which the forecaster follows point by point).
     Its reference learns only while in control, and re-anchors after ``relearn`` points in a row
     out of control (a confirmed level shift becomes the new normal);
   - ``spread``: collapse of the recent residual variance, and a flatline after activity (the
     series repeats one value for longer than it ever did);
   - ``context``: the quantised value ends a short sequence never seen before (``context``: the
     idea of contextOSE), with the recent rate of such novelty as its probability;
   - ``shift`` (off by default): two-sided CUSUM of the residuals; a confirmed shift re-anchors the
     forecaster. It costs NAB points (it fires on the slow wander of real series), so it is opt-in.
3. The smallest probability, Bonferroni-corrected for the number of tests, is mapped onto [0, 1] on
   a log scale (``-log10(p) / score_scale``).
4. ``Gate``: no score during warm-up; an incident opens at ``watch``, its echoes are damped until
   ``refractory`` quiet points have passed, unless it escalates.

The bands: see ``EnsembleDetector``. State: about 50 numbers, the profiles (96 + 84 by default) and
the context model's 584 contexts at 2 bits each: about 3.9 KB serialised.
"""

# ruff: noqa: PLR1730  (per-point paths compare and assign: min()/max() calls cost more)

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

from logtide.detectors.base import CommonConfig, Detector, Gate, Score, new_score, shared, surprise_to_score
from logtide.detectors.calibration import TailCalibrator, TailConfig
from logtide.detectors.changepoint import Cusum
from logtide.detectors.context import ContextModel
from logtide.detectors.seasonal import Baseline, baseline_config

_finite = math.isfinite
_exp = math.exp
_log = math.log
_log10 = math.log10
_sqrt = math.sqrt
_INF = math.inf
_TINY = 1e-300  # as in ``calibration``
_TESTS = ("point", "level", "spread", "context", "shift")
_tuple_new = tuple.__new__  # ``new_score`` inlined


@dataclass
class EnsembleConfig(CommonConfig):
    """Forecaster settings (see ``seasonal.BaselineConfig``), the tests to run and their settings.

    ``tests``: any of "point", "level", "spread", "shift". ``alpha_level``: weight of a new value in
    the long-run reference of the level test; ``level_band``: in-control band of that reference in
    standard deviations; ``relearn``: points in a row out of control that confirm a new level;
    ``level_memory``: memory of its calibration. ``alpha_short``: weight of the short-term residual
    variance (spread test); ``spread_guard``: spread statistics rarer than this are not learned (a
    flatline must not become normal while it lasts). ``k``/``h``: CUSUM allowance and decision level.
    ``tail_z``/``tail_memory``: calibration threshold and memory (see ``calibration``).
    ``min_change``: the smallest change worth a band, relative to the expected value; a band is never
    narrower than that nor than the data's resolution (the smallest step between values seen)."""

    periods: list[list[float]] = field(default_factory=lambda: [[86400.0, 96], [604800.0, 84]])
    alphas: list[float] = field(default_factory=lambda: [0.02, 0.3])
    alpha_hw: float = 0.002
    gamma: float = 0.2
    alpha_err: float = 0.02
    alpha_sel: float = 0.005
    clip: float = 4.0
    mode: str = "auto"
    tests: list[str] = field(default_factory=lambda: ["point", "level", "spread", "context"])
    alpha_level: float = 0.001
    level_band: float = 4.0
    relearn: int = 200
    level_memory: float = 2000.0
    alpha_short: float = 0.1
    spread_guard: float = 1e-4
    k: float = 0.5
    h: float = 8.0
    tail_z: float = 2.0
    tail_memory: float = 500.0
    min_change: float = 0.01
    ctx_levels: int = 6
    ctx_memory: int = 5000
    ctx_rate_memory: float = 500.0
    warmup: int = 200
    watch: float = 0.28


class EnsembleDetector(Detector):
    """Seasonal/level forecast; point, level, spread (and optionally shift) tests; one score.

    ``update`` is the per-point path written out for speed; ``_update_reference`` is the same step
    composed of the methods it copies (a property test pins the two to identical outputs and state).
    Bands respect the domain seen (a series never negative gets no negative bound; one within [0, 1],
    such as a ratio, gets bounds within [0, 1]) and are never narrower than the data's resolution.
    """

    __slots__ = (
        "_alpha_level",
        "_alpha_short",
        "_base",
        "_bonf",
        "_cd",
        "_context",
        "_cp",
        "_cs",
        "_ctx",
        "_cu",
        "_cusum",
        "_cv",
        "_gate",
        "_last",
        "_level",
        "_level_band",
        "_lm",
        "_ln",
        "_loc",
        "_lv",
        "_max_run",
        "_min_change",
        "_moves",
        "_p_band",
        "_point",
        "_relearn",
        "_res",
        "_run",
        "_score_scale",
        "_shift",
        "_spread",
        "_vmax",
        "_vmin",
        "_vs",
        "last_raw",
    )

    name = "ensemble"
    Config = EnsembleConfig

    def reset(self) -> None:
        c = self.config
        unknown = set(c.tests) - set(_TESTS)
        if unknown:
            raise ValueError(f"unknown ensemble tests {sorted(unknown)}; known: {', '.join(_TESTS)}")
        self._point = "point" in c.tests
        self._level = "level" in c.tests
        self._spread = "spread" in c.tests
        self._shift = "shift" in c.tests
        self._context = "context" in c.tests
        self._bonf = shared(float(max(1, len(set(c.tests)))))
        # settings read per point, as slots (the config's own objects)
        self._alpha_level = c.alpha_level
        self._level_band = c.level_band
        self._relearn = c.relearn
        self._alpha_short = c.alpha_short
        self._score_scale = c.score_scale
        self._base = Baseline(baseline_config(c))
        tc = TailConfig(z_q=c.tail_z, memory=c.tail_memory)
        tl = TailConfig(z_q=c.tail_z, memory=c.level_memory, memory_tail=c.level_memory / 10)
        ts = TailConfig(z_q=c.tail_z, memory=c.tail_memory, guard=c.spread_guard)
        self._cp = TailCalibrator(tc)  # point
        self._cu = TailCalibrator(tl)  # level, upper tail
        self._cd = TailCalibrator(tl)  # level, lower tail
        self._cv = TailCalibrator(ts)  # spread
        self._cs = TailCalibrator(tc)  # shift
        self._ctx = ContextModel(levels=c.ctx_levels, memory=c.ctx_memory, rate_memory=c.ctx_rate_memory)
        self._cusum = Cusum(c.k, c.h)
        self._ln = 0  # level reference: points, mean, variance, points in a row out of control
        self._lm = 0.0
        self._lv = 0.0
        self._loc = 0
        self._vs = 1.0  # short-term mean squared standardised residual
        self._last = math.nan  # flatline: last value, current and longest run of repeats, changes
        self._run = 0
        self._max_run = 0
        self._moves = 0
        self._gate = Gate(c)
        self._p_band = shared(10.0 ** (-c.alarm * c.score_scale) / self._bonf)
        self._min_change = c.min_change
        self._vmin = _INF  # domain seen: smallest and largest value, smallest step between two values
        self._vmax = -_INF
        self._res = 0.0
        self.last_raw = 0.0  # the score before gating (not state: for inspection only)

    def update(self, ts: float, value: float) -> Score:
        # The per-point path, with the tail lookups (``TailCalibrator.tail``/``inverse``), the level
        # and spread tests, the score mapping and the gate inlined: same operations in the same order
        # as the methods they copy (scores are bit-identical), without their call overhead.
        base = self._base
        if not (value - value == 0.0 and ts - ts == 0.0):  # not finite (NaN or infinite), without a call
            e = base.expected
            return _tuple_new(Score, (0.0, e, e, e))
        exp = base.forecast(ts)
        if base._n == 0:
            return self._first(ts, value)
        dv = value - self._last
        scale = base.scale
        z = (value - exp) / scale
        if z > 1e6:
            z = 1e6
        elif z < -1e6:
            z = -1e6
        p = 1.0
        half = _INF
        if self._point:
            za = -z if z < 0.0 else z
            cal = self._cp
            if cal._n < cal._warm or cal._ne < 3:  # not ready: tail 1, inverse infinite
                half = _INF * scale
            else:
                u = cal._u
                r = cal._rate
                if za <= u:
                    p = 1.0 if za <= 0.0 else r ** (za / u)
                else:
                    y = (za - u) / cal._sig
                    xi = cal._xi
                    p = (r * _exp(-y) if y < 700 else 0.0) if xi < 1e-6 else r * (1.0 + xi * y) ** (-1.0 / xi)
                    if not p > _TINY:
                        p = _TINY
                pb = self._p_band
                if pb >= r:
                    inv = u * _log(pb) / _log(r) if pb < 1.0 else 0.0
                else:
                    xi = cal._xi
                    inv = u + cal._sig * _log(r / pb) if xi < 1e-6 else u + cal._sig / xi * ((pb / r) ** (-xi) - 1.0)
                half = inv * scale
            # ``cal.learn(za)``; the rare exceedance part stays a call
            n = cal._n + 1
            cal._n = n
            n -= cal._skip
            if n > 0:
                a = cal._a
                if not n * a > 1.0:
                    a = 1.0 / n
                u = cal._u
                r = cal._rate
                if za > u and n > 1:
                    cal._rate = r + a * (1.0 - r)
                    cal.excess(za - u, u)
                else:
                    cal._rate = r + a * (0.0 - r)
                m = cal._l1
                m += a * ((10.0 * m if n > 10 and za > 10.0 * m > 0.0 else za) - m)
                cal._l1 = m
                cal._u = cal._zq * m
        if self._level:
            # level test (``_level_step``): the value against the long-run reference
            lm = self._lm
            sd = _sqrt(self._lv)
            floor = 1e-9 * ((lm if lm > 0.0 else -lm) + 1.0)
            if floor > sd:
                sd = floor
            d = value - lm
            zl = d / sd
            if zl >= 0.0:  # (the two calibrators are distinct: learning the other one first is the same)
                cal = self._cu
                other = self._cd
                x = zl
            else:
                cal = self._cd
                other = self._cu
                x = -zl
            # ``other.learn_zero()``
            n = other._n + 1
            other._n = n
            n -= other._skip
            if n > 0:
                a = other._a
                if not n * a > 1.0:
                    a = 1.0 / n
                other._rate += a * (0.0 - other._rate)
                m = other._l1
                m += a * (0.0 - m)
                other._l1 = m
                other._u = other._zq * m
            if cal._n < cal._warm or cal._ne < 3:
                pl = 1.0
            else:
                u = cal._u
                if x <= u:
                    pl = 1.0 if x <= 0.0 else cal._rate ** (x / u)
                else:
                    y = (x - u) / cal._sig
                    xi = cal._xi
                    r = cal._rate
                    pl = (r * _exp(-y) if y < 700 else 0.0) if xi < 1e-6 else r * (1.0 + xi * y) ** (-1.0 / xi)
                    if not pl > _TINY:
                        pl = _TINY
            # ``cal.learn(x)``; the rare exceedance part stays a call
            n = cal._n + 1
            cal._n = n
            n -= cal._skip
            if n > 0:
                a = cal._a
                if not n * a > 1.0:
                    a = 1.0 / n
                u = cal._u
                r = cal._rate
                if x > u and n > 1:
                    cal._rate = r + a * (1.0 - r)
                    cal.excess(x - u, u)
                else:
                    cal._rate = r + a * (0.0 - r)
                m = cal._l1
                m += a * ((10.0 * m if n > 10 and x > 10.0 * m > 0.0 else x) - m)
                cal._l1 = m
                cal._u = cal._zq * m
            ln = self._ln
            band = self._level_band
            if ln > 50 and (zl > band or zl < -band):
                loc = self._loc + 1
                if loc >= self._relearn:
                    self._lm = value
                    loc = 0
                self._loc = loc
            else:
                self._loc = 0
                al = self._alpha_level
                a = al if ln * al > 1.0 else 1.0 / (ln + 1)
                self._lm = lm + a * d
                self._lv = (1.0 - a) * (self._lv + a * d * d)
            self._ln = ln + 1
            if pl < p:
                p = pl
        if self._spread:
            # spread test (``_spread_step``): collapse of the residual variance, flatline
            zc = z if -10.0 < z < 10.0 else (10.0 if z > 0 else -10.0)
            vs = self._vs
            vs = vs + self._alpha_short * (zc * zc - vs)
            self._vs = vs
            stat = -_log(vs) if vs > 1e-20 else 46.0
            if stat < 0.0:
                stat = 0.0
            cal = self._cv
            if cal._n < cal._warm or cal._ne < 3:
                pv = 1.0
            else:
                u = cal._u
                if stat <= u:
                    pv = 1.0 if stat <= 0.0 else cal._rate ** (stat / u)
                else:
                    y = (stat - u) / cal._sig
                    xi = cal._xi
                    r = cal._rate
                    pv = (r * _exp(-y) if y < 700 else 0.0) if xi < 1e-6 else r * (1.0 + xi * y) ** (-1.0 / xi)
                    if not pv > _TINY:
                        pv = _TINY
            guard = cal._guard
            if not (guard > 0.0 and pv < guard):  # rarer than the guard: not learned
                # ``cal.learn(stat)``; the rare exceedance part stays a call
                n = cal._n + 1
                cal._n = n
                n -= cal._skip
                if n > 0:
                    a = cal._a
                    if not n * a > 1.0:
                        a = 1.0 / n
                    u = cal._u
                    r = cal._rate
                    if stat > u and n > 1:
                        cal._rate = r + a * (1.0 - r)
                        cal.excess(stat - u, u)
                    else:
                        cal._rate = r + a * (0.0 - r)
                    m = cal._l1
                    m += a * ((10.0 * m if n > 10 and stat > 10.0 * m > 0.0 else stat) - m)
                    cal._l1 = m
                    cal._u = cal._zq * m
            if dv == 0.0:
                run = self._run + 1
                self._run = run
                if run > 10 and self._moves > 10:
                    ratio = run / (self._max_run + 1.0)
                    if ratio > 1.0:
                        pf = ratio**-4.0
                        if pf < pv:
                            pv = pf
            else:
                run = self._run
                if run > self._max_run:
                    self._max_run = run
                self._run = 0
                self._moves += 1
                self._last = value
            if pv < p:
                p = pv
        if self._context:
            # context test (``ContextModel.novelty``)
            cx = self._ctx
            n = cx._n + 1
            cx._n = n
            step = cx._step
            if step == 0.0:
                pc = cx.novelty_learning_range(value, n)
            else:
                k = cx._k
                x = (value - cx._lo) / step
                sym = 0 if x < 0.0 else k - 1 if x >= cx._levels else int(x) + 1
                a = cx._a
                m = n - cx._warm
                if m * a < 1.0:
                    a = 1.0 / (m + 2.0)
                seen = cx._seen
                gen = cx._gen
                prev = gen - 1 if gen > 1 else 255
                pc = 1.0
                g = seen[sym]
                r = cx._r0
                if g == gen or (g == prev and g):
                    cx._r0 = r - a * r
                else:
                    pc = r
                    cx._r0 = r + a * (1.0 - r)
                seen[sym] = gen
                s1 = cx._s1
                if s1 >= 0:
                    key = s1 * k + sym
                    i = cx._o1 + key
                    g = seen[i]
                    r = cx._r1
                    if g == gen or (g == prev and g):
                        cx._r1 = r - a * r
                    else:
                        if r < pc:
                            pc = r
                        cx._r1 = r + a * (1.0 - r)
                    seen[i] = gen
                    s2 = cx._s2
                    if s2 >= 0:
                        i = cx._o2 + s2 * k * k + key
                        g = seen[i]
                        r = cx._r2
                        if g == gen or (g == prev and g):
                            cx._r2 = r - a * r
                        else:
                            if r < pc:
                                pc = r
                            cx._r2 = r + a * (1.0 - r)
                        seen[i] = gen
                cx._s2 = s1
                cx._s1 = sym
                age = cx._age + 1
                if age >= cx._mem:
                    cx._next_generation()
                    age = 0
                cx._age = age
                if sym == 0 or sym == k - 1:
                    cx.outside(value)
                else:
                    cx._out = 0
                pc *= 3.0
            if pc < p:
                p = pc
        shift = 0.0
        if self._shift:
            stat, shift = self._cusum.step(z)
            pc = self._cs.tail(stat)
            self._cs.learn(stat)
            p = min(p, pc)
        base.learn(ts, value)
        if shift:
            base.relearn(exp + shift * scale)
        # score (``surprise_to_score``)
        q = p * self._bonf
        if not q < 1.0:
            s = 0.0
        elif q <= 0.0:
            s = 1.0
        else:
            s = -_log10(q) / self._score_scale
            if s > 1.0:
                s = 1.0
        self.last_raw = s
        # gate (``Gate.__call__``)
        g = self._gate
        n = g._n + 1
        g._n = n
        if n <= g._warm:
            s = 0.0
        else:
            watch = g._alarm
            if s >= watch:
                g._run += 1
                if g._run < g._min:
                    s = s * g._damp
            else:
                g._run = 0
            damped = False
            quiet = g._quiet
            if quiet > 0:
                g._quiet = g._refr if (g._run > 1 and g._hold) else quiet - 1
                if s < g._peak + g._esc:
                    s = (s if s < watch else watch) * g._damp
                    damped = True
            if not damped and s >= watch and g._refr > 0:
                g._quiet = g._refr
                g._peak = s
        # band (``_band``), then the domain learns the value (``_learn_domain``)
        w = self._min_change * (exp if exp > 0.0 else -exp)
        res = self._res
        if res > w:
            w = res
        if half < w:
            half = w
        lo = exp - half
        hi = exp + half
        e = exp
        vmin = self._vmin
        vmax = self._vmax
        if vmin >= 0.0:
            if lo < 0.0:
                lo = 0.0
                if e < 0.0:
                    e = 0.0
            if vmax <= 1.0 and hi > 1.0:
                hi = 1.0
                if e > 1.0:
                    e = 1.0
        if value < vmin:
            self._vmin = value
        if value > vmax:
            self._vmax = value
        if dv != 0.0:
            if dv < 0.0:
                dv = -dv
            if dv < res or res == 0.0:
                self._res = dv
            if not self._spread:
                self._last = value
        return _tuple_new(Score, (s, e, lo, hi))

    def _first(self, ts: float, value: float) -> Score:
        """The first finite point: the baseline, the level reference and the domain start from it."""
        self._base.learn(ts, value)
        self._level_step(value)
        self._last = value
        self._vmin = self._vmax = value
        self._gate(0.0)
        return new_score(0.0, value, value, value)

    def _band(self, exp: float, half: float) -> tuple[float, float, float]:
        """Expected value and band of half-width ``half`` around it, widened to the resolution and
        clipped to the domain seen."""
        w = max(self._min_change * abs(exp), self._res)
        half = max(half, w)
        lo, hi, e = exp - half, exp + half, exp
        if self._vmin >= 0.0:
            lo, e = max(lo, 0.0), max(e, 0.0)
            if self._vmax <= 1.0:
                hi, e = min(hi, 1.0), min(e, 1.0)
        return e, lo, hi

    def _learn_domain(self, value: float, dv: float) -> None:
        self._vmin = min(self._vmin, value)
        self._vmax = max(self._vmax, value)
        if dv != 0.0:
            self._res = abs(dv) if self._res == 0.0 else min(self._res, abs(dv))
            if not self._spread:
                self._last = value

    def _update_reference(self, ts: float, value: float) -> Score:
        """``update`` composed of the methods its inlined parts copy: slower, same results bit for bit."""
        base = self._base
        if not (_finite(value) and _finite(ts)):
            e = base.expected
            return new_score(0.0, e, e, e)
        exp = base.forecast(ts)
        if base._n == 0:
            return self._first(ts, value)
        dv = value - self._last
        scale = base.scale
        z = min(max((value - exp) / scale, -1e6), 1e6)
        p = 1.0
        half = _INF
        if self._point:
            za = abs(z)
            p = self._cp.tail(za)
            half = self._cp.inverse(self._p_band) * scale
            self._cp.learn(za)
        if self._level:
            p = min(p, self._level_step(value))
        if self._spread:
            p = min(p, self._spread_step(z, value))
        if self._context:
            p = min(p, self._ctx.novelty(value))
        shift = 0.0
        if self._shift:
            stat, shift = self._cusum.step(z)
            pc = self._cs.tail(stat)
            self._cs.learn(stat)
            p = min(p, pc)
        base.learn(ts, value)
        if shift:
            base.relearn(exp + shift * scale)
        s = surprise_to_score(p * self._bonf, self._score_scale)
        self.last_raw = s
        s = self._gate(s)
        e, lo, hi = self._band(exp, half)
        self._learn_domain(value, dv)
        return new_score(s, e, lo, hi)

    def _level_step(self, value: float) -> float:
        """Tail probability of the value against the long-run values; learns the reference."""
        c = self.config
        ln = self._ln
        lm = self._lm
        sd = math.sqrt(self._lv)
        floor = 1e-9 * (abs(lm) + 1.0)
        sd = max(sd, floor)
        d = value - lm
        zl = d / sd
        if zl >= 0.0:
            p = self._cu.tail(zl)
            self._cu.learn(zl)
            self._cd.learn_zero()
        else:
            p = self._cd.tail(-zl)
            self._cd.learn(-zl)
            self._cu.learn_zero()
        # the reference learns only while the value is in control (no boiling frog under a slow
        # drift); after ``relearn`` points in a row out of control the new level is confirmed and
        # the reference restarts from here
        if ln > 50 and (zl > c.level_band or zl < -c.level_band):
            self._loc += 1
            if self._loc >= c.relearn:
                self._lm, self._loc = value, 0
        else:
            self._loc = 0
            a = c.alpha_level if ln * c.alpha_level > 1.0 else 1.0 / (ln + 1)
            self._lm = lm + a * d
            self._lv = (1.0 - a) * (self._lv + a * d * d)
        self._ln = ln + 1
        return p

    def _spread_step(self, z: float, value: float) -> float:
        """Tail probability of a spread collapse or of a flatline after activity."""
        zc = z if -10.0 < z < 10.0 else (10.0 if z > 0 else -10.0)
        vs = self._vs + self.config.alpha_short * (zc * zc - self._vs)
        self._vs = vs
        stat = -math.log(vs) if vs > 1e-20 else 46.0
        stat = max(stat, 0.0)
        cv = self._cv
        p = cv.tail(stat)
        cv.learn(stat, p)
        # flatline: one value repeated for longer than any run of repeats before; twice as long is
        # a 1-in-16 event, ten times 1-in-10,000 (only once the series has shown some activity)
        if value == self._last:
            run = self._run + 1
            self._run = run
            if self._moves > 10 and run > 10:
                ratio = run / (self._max_run + 1.0)
                if ratio > 1.0:
                    pf = ratio**-4.0
                    p = min(p, pf)
        else:
            self._max_run = max(self._max_run, self._run)
            self._run = 0
            self._moves += 1
            self._last = value
        return p

    def get_state(self) -> dict[str, Any]:
        return {
            "b": self._base.get_state(),
            "cal": [k.get_state() for k in (self._cp, self._cu, self._cd, self._cv, self._cs)],
            "lv": [self._ln, self._lm, self._lv, self._loc],
            "sp": [self._vs, self._last, self._run, self._max_run, self._moves],
            "cu": self._cusum.get_state(),
            "g": self._gate.get_state(),
            "dm": [self._vmin, self._vmax, self._res],
        } | ({"cx": self._ctx.get_state()} if self._context else {})

    def set_state(self, state: dict[str, Any]) -> None:
        self._base.set_state(state["b"])
        for k, s in zip((self._cp, self._cu, self._cd, self._cv, self._cs), state["cal"], strict=True):
            k.set_state(s)
        lv = state["lv"]
        self._ln, self._lm, self._lv, self._loc = int(lv[0]), float(lv[1]), float(lv[2]), int(lv[3])
        sp = state["sp"]
        self._vs, self._last = float(sp[0]), float(sp[1])
        self._run, self._max_run, self._moves = int(sp[2]), int(sp[3]), int(sp[4])
        self._cusum.set_state(state["cu"])
        self._gate.set_state(state["g"])
        dm = state.get("dm")  # absent in states written before bands learned the domain
        if dm is not None:
            self._vmin, self._vmax, self._res = (float(v) for v in dm)
        if "cx" in state:
            self._ctx.set_state(state["cx"])
