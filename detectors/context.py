"""Context novelty: a point is surprising when the short sequence of quantised values it ends has
never been seen before (the idea behind contextOSE, Smirnov 2016, reduced to what fits in a few
hundred bytes per series; our own code).

- Values are quantised into ``levels`` equal bins over a reference range learned on the first
  ``warmup`` points (padded by ``pad`` of its width on each side), plus one bin below and one above
  it: ``levels + 2`` symbols. The range is learned again after ``relearn`` points in a row outside it
  (a confirmed move to a new region becomes the new reference). No lookahead: contextOSE is given
  the whole file's minimum and maximum by NAB; here the range comes from the past only.
- Contexts of order 0, 1 and 2 (the symbol; the previous and this one; the two previous and this
  one) are remembered, each with the generation it was last seen in; a context is known for one to
  two ``memory`` spans (a new generation starts every ``memory`` points: old patterns are forgotten).
- A novel context of order k has tail probability ``r_k``, the recent rate at which order-k
  contexts were novel (so a series that keeps producing new contexts is not alarming, and one that
  stopped long ago is). The point's probability is the smallest over the orders, times 3 (Bonferroni).

``ContextModel`` is that model (the ensemble runs it as its ``context`` test); ``ContextDetector`` is
it alone behind the common gate. ``expected`` is the middle of the bins that followed the previous
symbol before, and the band spans them (clipped to the domain seen). State: about 900 bytes
(one byte per possible context, 584 with the default 6 levels).
"""

# ruff: noqa: PLR1730  (per-point paths compare and assign: min()/max() calls cost more)

from __future__ import annotations

import base64
import math
from dataclasses import dataclass
from typing import Any

from logtide.detectors.base import CommonConfig, Detector, Gate, Score, new_score, shared

_finite = math.isfinite
_INF = math.inf


@dataclass
class ContextConfig(CommonConfig):
    """``levels``: quantisation bins inside the reference range; ``pad``: margin added to that range
    on each side (as a fraction of its width); ``memory``: points after which the older generation of
    remembered contexts is dropped; ``rate_memory``: memory of the novelty rates; ``relearn``: points
    in a row outside the range that make it learned again; ``range_points``: points the range is
    learned on."""

    levels: int = 6
    pad: float = 0.1
    memory: int = 5000
    rate_memory: float = 500.0
    relearn: int = 200
    range_points: int = 200
    warmup: int = 200


class ContextModel:
    """The novelty model of a series; ``novelty(value)`` judges then learns one finite value.

    The remembered contexts live in one byte array, one byte per possible context of every order:
    0 = never seen, else the generation (1 to 255, cycling) in which it was last seen. A context is
    known when seen in this generation or the previous one; a new generation every ``memory`` points
    forgets the rest (a cheap bit of bookkeeping instead of clearing sets)."""

    __slots__ = ("_a", "_age", "_gen", "_k", "_levels", "_lo", "_mem", "_n", "_o1", "_o2", "_out", "_pad", "_r0",
                 "_r1", "_r2", "_relearn", "_rmax", "_rmin", "_s1", "_s2", "_seen", "_step", "_warm")

    def __init__(self, *, levels: int = 6, pad: float = 0.1, memory: int = 5000, rate_memory: float = 500.0,
                 relearn: int = 200, range_points: int = 200) -> None:
        k = levels + 2
        self._levels = levels
        self._k = k
        self._o1 = k  # offsets of the order-1 and order-2 contexts in ``_seen``
        self._o2 = k + k * k
        self._pad = pad
        self._mem = memory
        self._a = shared(1.0 / rate_memory)
        self._relearn = relearn
        self._warm = range_points
        self._n = 0  # points seen since the range started being learned
        self._rmin = _INF  # range being learned
        self._rmax = -_INF
        self._lo = 0.0  # reference range: lower end and bin width (0: being learned)
        self._step = 0.0
        self._s1 = -1  # previous two symbols (-1: none)
        self._s2 = -1
        self._seen = bytearray(k + k * k + k * k * k)
        self._gen = 1
        self._r0 = self._r1 = self._r2 = 1.0  # recent novelty rate per order
        self._age = 0  # points in the current generation
        self._out = 0  # points in a row outside the range

    @property
    def ready(self) -> bool:
        return self._step > 0.0

    def symbol(self, value: float) -> int:
        x = (value - self._lo) / self._step
        return 0 if x < 0.0 else self._k - 1 if x >= self._levels else int(x) + 1

    def _learn_range(self) -> None:
        lo, hi = self._rmin, self._rmax
        width = hi - lo
        if not width > 0.0:
            width = abs(lo) * 0.1 + 1e-9
        self._lo = lo - self._pad * width
        self._step = width * (1.0 + 2.0 * self._pad) / self._levels
        self._seen = bytearray(len(self._seen))
        self._gen = 1
        self._s1 = self._s2 = -1

    def novelty(self, value: float) -> float:
        """Tail probability of the contexts ``value`` ends (1 while the range is learned); then learns."""
        n = self._n + 1
        self._n = n
        step = self._step
        if step == 0.0:
            return self.novelty_learning_range(value, n)
        k = self._k
        x = (value - self._lo) / step
        sym = 0 if x < 0.0 else k - 1 if x >= self._levels else int(x) + 1
        m = n - self._warm  # points judged since the range was learned
        a = self._a
        if m * a < 1.0:
            a = 1.0 / (m + 2.0)  # early on, the plain novelty fraction
        seen = self._seen
        gen = self._gen
        prev = gen - 1 if gen > 1 else 255
        p = 1.0
        g = seen[sym]
        r = self._r0
        if g == gen or (g == prev and g):
            self._r0 = r - a * r
        else:
            p = r
            self._r0 = r + a * (1.0 - r)
        seen[sym] = gen
        s1 = self._s1
        if s1 >= 0:
            key = s1 * k + sym
            i = self._o1 + key
            g = seen[i]
            r = self._r1
            if g == gen or (g == prev and g):
                self._r1 = r - a * r
            else:
                if r < p:
                    p = r
                self._r1 = r + a * (1.0 - r)
            seen[i] = gen
            s2 = self._s2
            if s2 >= 0:
                i = self._o2 + s2 * k * k + key
                g = seen[i]
                r = self._r2
                if g == gen or (g == prev and g):
                    self._r2 = r - a * r
                else:
                    if r < p:
                        p = r
                    self._r2 = r + a * (1.0 - r)
                seen[i] = gen
        self._s2 = s1
        self._s1 = sym
        age = self._age + 1
        if age >= self._mem:
            self._next_generation()
            age = 0
        self._age = age
        if sym == 0 or sym == k - 1:
            self.outside(value)
        else:
            self._out = 0
        p *= 3.0
        return p if p < 1.0 else 1.0

    def novelty_learning_range(self, value: float, n: int) -> float:
        """``novelty`` while the range is learned (``n``: this point's count): 1."""
        if value < self._rmin:
            self._rmin = value
        if value > self._rmax:
            self._rmax = value
        if n >= self._warm:
            self._learn_range()
        return 1.0

    def outside(self, value: float) -> None:
        """One more point outside the range; a confirmed move learns the range again from here."""
        out = self._out + 1
        if out >= self._relearn:
            self._rmin = self._rmax = value
            self._n = self._warm - self._relearn // 2  # over half a relearn span
            self._step = 0.0
            out = 0
        self._out = out

    def _next_generation(self) -> None:
        gen = self._gen + 1 if self._gen < 255 else 1
        self._gen = gen
        # contexts last seen 255 generations ago would read as current: forget them
        self._seen = self._seen.replace(bytes((gen,)), b"\0")

    def band(self, value: float) -> tuple[float, float]:
        """The span of the bins that followed the previous symbol before (this value's bin if none)."""
        k = self._k
        first = last = -1
        if self._s1 >= 0:
            gen = self._gen
            prev = gen - 1 if gen > 1 else 255
            row = self._seen[self._o1 + self._s1 * k: self._o1 + self._s1 * k + k]
            hits = [j for j, g in enumerate(row) if g and g in (gen, prev)]
            if hits:
                first, last = hits[0], hits[-1]
        if first < 0:
            first = last = self.symbol(value)
        lo, step = self._lo, self._step
        lower = lo + (first - 1) * step if first > 0 else -_INF
        upper = lo + last * step if last < k - 1 else _INF
        return lower, upper

    def get_state(self) -> list[Any]:
        return [self._n, self._s1, self._s2, self._age, self._out, self._gen, self._rmin, self._rmax, self._lo,
                self._step, self._r0, self._r1, self._r2, self._pack()]

    def set_state(self, state: list[Any]) -> None:
        self._n, self._s1, self._s2, self._age, self._out, self._gen = (int(v) for v in state[:6])
        self._rmin, self._rmax, self._lo, self._step, self._r0, self._r1, self._r2 = (float(v) for v in state[6:13])
        self._unpack(state[13])

    def _pack(self) -> str:
        """The contexts as 2 bits each (0 unknown, 1 previous generation, 2 current): what behaviour
        depends on (a context older than that reads as never seen, now and later)."""
        gen = self._gen
        prev = gen - 1 if gen > 1 else 255
        codes = [2 if g == gen else 1 if g and g == prev else 0 for g in self._seen]
        codes += [0] * (-len(codes) % 4)
        packed = bytes(codes[i] | codes[i + 1] << 2 | codes[i + 2] << 4 | codes[i + 3] << 6
                       for i in range(0, len(codes), 4))
        return base64.b64encode(packed).decode("ascii")

    def _unpack(self, text: str) -> None:
        gen = self._gen
        prev = gen - 1 if gen > 1 else 255
        value = (0, prev, gen, 0)
        seen = self._seen
        for i, b in enumerate(base64.b64decode(text)):
            for j in range(4):
                if 4 * i + j < len(seen):
                    seen[4 * i + j] = value[(b >> (2 * j)) & 3]


class ContextDetector(Detector):
    """Novelty of the quantised value's order-0/1/2 contexts, alone; see the module docstring."""

    __slots__ = ("_gate", "_model", "_vmax", "_vmin")

    name = "context"
    Config = ContextConfig

    def reset(self) -> None:
        c = self.config
        self._model = ContextModel(levels=c.levels, pad=c.pad, memory=c.memory, rate_memory=c.rate_memory,
                                   relearn=c.relearn, range_points=c.range_points)
        self._vmin = _INF
        self._vmax = -_INF
        self._gate = Gate(c)

    def update(self, ts: float, value: float) -> Score:
        if not (_finite(value) and _finite(ts)):
            return new_score(0.0, math.nan, math.nan, math.nan)
        model = self._model
        if model.ready:
            lower, upper = model.band(value)
            if lower == -_INF:
                lower = self._vmin
            if upper == _INF:
                upper = self._vmax
            if self._vmin >= 0.0:
                lower = max(lower, 0.0)
                if self._vmax <= 1.0:
                    upper = min(upper, 1.0)
            lower, upper = min(lower, upper), max(lower, upper)
        else:
            lower = upper = value
        p = model.novelty(value)
        s = -math.log10(p) / self.config.score_scale if p < 1.0 else 0.0
        s = self._gate(1.0 if s > 1.0 else s)
        if value < self._vmin:
            self._vmin = value
        if value > self._vmax:
            self._vmax = value
        return new_score(s, 0.5 * (lower + upper), lower, upper)

    def get_state(self) -> dict[str, Any]:
        return {"m": self._model.get_state(), "d": [self._vmin, self._vmax], "g": self._gate.get_state()}

    def set_state(self, state: dict[str, Any]) -> None:
        self._model.set_state(state["m"])
        self._vmin, self._vmax = (float(v) for v in state["d"])
        self._gate.set_state(state["g"])
