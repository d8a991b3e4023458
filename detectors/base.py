"""The common detector interface, the score record and the state codec.

Every detector consumes one point at a time, ``update(ts, value) -> Score``, and judges the point
against what it learned from the past only, then learns from it. State is plain data (floats, ints,
lists, dicts) so that it can live in a Faust table: ``to_bytes()`` / ``from_bytes()`` round-trip it
exactly, and a restored detector produces bit-identical subsequent scores.
"""

from __future__ import annotations

import base64
import json
import math
from array import array
from dataclasses import asdict, dataclass, fields
from typing import Any, ClassVar, NamedTuple

NAN = math.nan
INF = math.inf


class Score(NamedTuple):
    """One verdict: ``score`` in [0, 1] (0.5 = tail probability 1e-4 with the default scale), the value
    expected from the past and the band ``[lower, upper]`` the value was expected in.

    Immutable (a named tuple): every ``update`` of every detector returns a new one, which the caller
    may keep. Hot paths build it with ``new_score(s, e, lo, hi)`` (no keyword handling)."""

    score: float
    expected: float
    lower: float
    upper: float


_tuple_new = tuple.__new__


def new_score(score: float, expected: float, lower: float, upper: float) -> Score:
    """``Score(score, expected, lower, upper)``, built the fast way (hot paths inline this call)."""
    return _tuple_new(Score, (score, expected, lower, upper))


def surprise_to_score(p: float, scale: float) -> float:
    """Map a tail probability to [0, 1] on a log scale: ``-log10(p) / scale``, clipped.

    A log scale keeps scores readable: with ``scale=8`` a score of 0.5 means "this happens once in
    10,000 normal points" whatever the series' unit, level or noise.
    """
    if not p < 1.0:  # also NaN
        return 0.0
    if p <= 0.0:
        return 1.0
    s = -math.log10(p) / scale
    return 1.0 if s > 1.0 else s


def normal_tail(z: float) -> float:
    """Two-sided tail probability of a standard normal deviation ``z``."""
    return math.erfc(abs(z) * 0.7071067811865476)


class Detector:
    """Base class: configuration in a dataclass ``Config``, state as plain data.

    The contract, the same for every detector: ``update(ts, value)`` is one fused step (score the
    point against the past, learn it, apply the alarm gate) and returns a new immutable ``Score``.
    Subclasses implement ``update``, ``get_state`` and ``set_state``; the rest (construction from a
    dict, serialisation) is shared.
    """

    __slots__ = ("config",)  # subclasses without ``__slots__`` get a ``__dict__`` as usual

    name: ClassVar[str] = ""
    Config: ClassVar[type]

    def __init__(self, config: Any = None, **overrides: Any) -> None:
        if config is None:
            config = self.Config()
        elif isinstance(config, dict):
            config = self.Config(**config)
        if overrides:
            config = self.Config(**{**asdict(config), **overrides})
        self.config = share_config(config)
        self.reset()

    def reset(self) -> None:
        """Forget everything learned (configuration is kept)."""
        raise NotImplementedError

    def update(self, ts: float, value: float) -> Score:
        """Score the point against the past, then learn from it; a new immutable ``Score``."""
        raise NotImplementedError

    def get_state(self) -> dict[str, Any]:
        """The learned state as plain data."""
        raise NotImplementedError

    def set_state(self, state: dict[str, Any]) -> None:
        """Restore what ``get_state`` returned."""
        raise NotImplementedError

    def to_bytes(self) -> bytes:
        """Detector name, configuration and state, encoded compactly and exactly."""
        return encode({"d": self.name, "c": asdict(self.config), "s": self.get_state()})

    @classmethod
    def from_bytes(cls, data: bytes) -> Detector:
        """Rebuild a detector from ``to_bytes`` output (any registered detector)."""
        from logtide.detectors import REGISTRY

        doc = decode(data)
        klass = REGISTRY[doc["d"]]
        det = klass(config_from_dict(klass.Config, doc["c"]))
        det.set_state(doc["s"])
        return det


_CONFIGS: dict[tuple[type, str], Any] = {}


def share_config(config: Any) -> Any:
    """One configuration object for all the detectors configured alike (a worker holds thousands of
    detectors with the same settings): the first equal one seen, else ``config`` itself. Shared, so
    treat a detector's ``config`` as read-only (build a new detector to change settings)."""
    key = (type(config), repr(asdict(config)))
    got = _CONFIGS.get(key)
    if got is None:
        if len(_CONFIGS) >= 256:
            _CONFIGS.clear()
        _CONFIGS[key] = got = config
    return got


_SHARED: dict[tuple[type, str], Any] = {}


def shared(value: Any) -> Any:
    """The one object equal to ``value`` (same type and repr) used by all detectors: settings derived
    per detector (reciprocals, tuples of periods) then live once per worker, not once per series."""
    key = (type(value), repr(value))
    got = _SHARED.get(key)
    if got is None:
        if len(_SHARED) >= 4096:
            _SHARED.clear()
        _SHARED[key] = got = value
    return got


def config_from_dict(config_cls: type, data: dict[str, Any]) -> Any:
    """Build a config dataclass from a dict, ignoring unknown keys (forward compatibility)."""
    names = {f.name for f in fields(config_cls)}
    return config_cls(**{k: v for k, v in data.items() if k in names})


# --- codec: JSON for structure, float lists packed as little-endian doubles (exact and compact) ---


def _pack(obj: Any) -> Any:
    if isinstance(obj, dict):
        return {k: _pack(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        if len(obj) >= 4 and all(type(v) is float for v in obj):
            a = array("d", obj)
            if a.itemsize == 8 and __import__("sys").byteorder == "big":
                a.byteswap()
            return {"~d": base64.b64encode(a.tobytes()).decode("ascii")}
        return [_pack(v) for v in obj]
    if type(obj) is float and not math.isfinite(obj):
        return {"~f": repr(obj)}
    return obj


def _unpack(obj: Any) -> Any:
    if isinstance(obj, dict):
        if "~d" in obj and len(obj) == 1:
            a = array("d")
            a.frombytes(base64.b64decode(obj["~d"]))
            if __import__("sys").byteorder == "big":
                a.byteswap()
            return a.tolist()
        if "~f" in obj and len(obj) == 1:
            return float(obj["~f"])
        return {k: _unpack(v) for k, v in obj.items()}
    if isinstance(obj, list):
        return [_unpack(v) for v in obj]
    return obj


def encode(obj: Any) -> bytes:
    """Plain data to bytes; floats survive exactly (including NaN and infinities)."""
    return json.dumps(_pack(obj), separators=(",", ":"), allow_nan=False).encode()


def decode(data: bytes) -> Any:
    """Inverse of ``encode``."""
    return _unpack(json.loads(data))


@dataclass
class CommonConfig:
    """Settings every detector shares.

    ``warmup``: points learned before any score is given (no alarm before a baseline exists).
    ``score_scale``: decades of tail probability mapped onto [0, 1] (score = -log10(p) / scale).
    ``alarm``: the suggested alert threshold on the score (the expected band is drawn at it).
    ``watch``: the score at which the gate considers an incident open; ``min_duration``: consecutive
    points at or above ``watch`` needed to open it (against one-point blips); ``refractory``: points
    after it opened during which scores are damped by ``damp`` (one incident, one alarm: against
    flapping), unless a score beats the one that opened it by ``escalate`` (a worse incident pages
    again). ``watch`` may sit below ``alarm``: a notable deviation then already mutes its echoes.
    """

    warmup: int = 100
    score_scale: float = 8.0
    alarm: float = 0.5
    watch: float = 0.3
    min_duration: int = 1
    refractory: int = 100
    damp: float = 0.4
    escalate: float = 0.1
    hold: bool = True


class Gate:
    """Warm-up, minimum duration and refractory period applied to a raw score stream."""

    __slots__ = ("_alarm", "_damp", "_esc", "_hold", "_min", "_n", "_peak", "_quiet", "_refr", "_run", "_warm")

    def __init__(self, cfg: CommonConfig) -> None:
        self._warm = cfg.warmup
        self._alarm = cfg.watch
        self._min = cfg.min_duration
        self._refr = cfg.refractory
        self._damp = cfg.damp
        self._esc = cfg.escalate
        self._hold = cfg.hold
        self._peak = 0.0
        self._n = 0
        self._run = 0
        self._quiet = 0

    def __call__(self, s: float) -> float:
        self._n += 1
        if self._n <= self._warm:
            return 0.0
        if s >= self._alarm:
            self._run += 1
            if self._run < self._min:
                s = s * self._damp
        else:
            self._run = 0
        if self._quiet > 0:
            # an incident stays open while the score stays at the watch level (two points in a
            # row: isolated blips do not prolong it); it closes ``refractory`` points after that
            # (hysteresis)
            self._quiet = self._refr if (self._run > 1 and self._hold) else self._quiet - 1
            if s < self._peak + self._esc:
                return (s if s < self._alarm else self._alarm) * self._damp
        if s >= self._alarm and self._refr > 0:
            self._quiet = self._refr
            self._peak = s
        return s

    def get_state(self) -> list[float]:
        return [self._n, self._run, self._quiet, self._peak]

    def set_state(self, state: list[float]) -> None:
        self._n, self._run, self._quiet = (int(v) for v in state[:3])
        self._peak = float(state[3])


class Domain:
    """The domain a series has shown, for readable bands: the smallest and largest value and the
    smallest step between two consecutive distinct values (its resolution). ``band`` widens a band to
    at least that resolution and ``min_change`` of the level, and clips it (and the expected value)
    to the domain seen: never negative for a series never negative, within [0, 1] for one that never
    left it (a ratio)."""

    __slots__ = ("last", "res", "vmax", "vmin")

    def __init__(self) -> None:
        self.vmin = math.inf
        self.vmax = -math.inf
        self.res = 0.0
        self.last = math.nan

    def band(self, expected: float, lower: float, upper: float, min_change: float = 0.01) -> tuple[float, float, float]:
        w = max(min_change * abs(expected), self.res)
        lower = min(lower, expected - w)
        upper = max(upper, expected + w)
        if self.vmin >= 0.0:
            lower, expected = max(lower, 0.0), max(expected, 0.0)
            if self.vmax <= 1.0:
                upper, expected = min(upper, 1.0), min(expected, 1.0)
        return expected, lower, upper

    def learn(self, value: float) -> None:
        self.vmin = min(self.vmin, value)
        self.vmax = max(self.vmax, value)
        d = abs(value - self.last)
        if d > 0.0 and (self.res == 0.0 or d < self.res):
            self.res = d
        self.last = value

    def get_state(self) -> list[float]:
        return [self.vmin, self.vmax, self.res, self.last]

    def set_state(self, state: list[float] | None) -> None:
        if state:  # absent in states written before bands learned the domain
            self.vmin, self.vmax, self.res, self.last = (float(v) for v in state)
