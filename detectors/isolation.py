"""Multivariate: an isolation forest over window feature vectors, refitted on a recent reference.

Some incidents show only in combination (traffic normal, error rate normal, but p99 latency high
*for that traffic*). ``IsolationDetector`` takes a vector per point (for instance count, error rate,
p99 latency of a window) or, for a plain series, builds one from the recent window (value, change,
distance from the window mean, window spread). Every ``refit_every`` points it refits a
scikit-learn ``IsolationForest`` with a fixed ``random_state`` on the last ``reference`` vectors, so a
restored detector (which carries the reference window, never a pickled forest) refits the very
same forest. Scoring walks the fitted trees in plain Python: one point costs microseconds, not
the milliseconds of a scikit-learn call.
"""

from __future__ import annotations

import math
from bisect import bisect_left
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from logtide.detectors.base import CommonConfig, Detector, Gate, Score, surprise_to_score
from logtide.detectors.calibration import TailCalibrator, TailConfig

_EULER = 0.5772156649015329

_finite = math.isfinite


def _avg_path(n: float) -> float:
    """Average path length of an unsuccessful binary-search-tree search over ``n`` points."""
    if n <= 1:
        return 0.0
    if n == 2:
        return 1.0
    return 2.0 * (math.log(n - 1.0) + _EULER) - 2.0 * (n - 1.0) / n


@dataclass
class IsolationConfig(CommonConfig):
    """``reference``: vectors kept for refitting; ``refit_every``: points between refits;
    ``n_estimators``/``max_samples``: forest size; ``window``: points summarised into the features
    of a plain series; ``seed``: the forest's random_state."""

    reference: int = 512
    refit_every: int = 256
    n_estimators: int = 50
    max_samples: int = 128
    window: int = 16
    seed: int = 0
    warmup: int = 256
    tail_z: float = 2.5
    tail_memory: float = 500.0


class IsolationDetector(Detector):
    """Isolation forest anomaly score of a feature vector, calibrated into a tail probability."""

    name = "isolation"
    Config = IsolationConfig

    def reset(self) -> None:
        c = self.config
        self._ref: list[list[float]] = []  # reference vectors, oldest first
        self._win: list[float] = []  # last values of a plain series
        self._since = 0  # points since the last refit
        self._fitted = 0  # reference size at the last fit (0: never)
        self._trees: list[tuple[list[int], list[int], list[int], list[float], list[float]]] = []
        self._norm = 1.0
        self._ref_scores: list[float] = []
        self._u = 1.0
        self._sig = 1.0
        self._k_frac = 1.0
        self._cal = TailCalibrator(TailConfig(z_q=c.tail_z, memory=c.tail_memory))
        self._gate = Gate(c)

    # -- features --------------------------------------------------------------------------
    def _features(self, value: float) -> list[float]:
        w = self._win
        if not w:
            return [value, 0.0, 0.0, 0.0]
        m = sum(w) / len(w)
        sd = math.sqrt(sum((v - m) ** 2 for v in w) / len(w))
        return [value, value - w[-1], value - m, sd]

    # -- forest ----------------------------------------------------------------------------
    def _fit(self) -> None:
        try:
            import numpy as np
            from sklearn.ensemble import IsolationForest
        except ImportError as exc:
            raise RuntimeError(
                "the isolation detector needs scikit-learn and numpy: pip install 'logtide[isolation]'"
            ) from exc

        c = self.config
        end = len(self._ref) - self._since
        x = np.asarray(self._ref[max(0, end - c.reference) : end], dtype=float)
        forest = IsolationForest(n_estimators=c.n_estimators, max_samples=min(c.max_samples, len(x)),
                                 random_state=c.seed)
        forest.fit(x)
        trees = []
        for est in forest.estimators_:
            t = est.tree_
            extra = [_avg_path(float(v)) for v in t.n_node_samples]
            trees.append((t.children_left.tolist(), t.children_right.tolist(), t.feature.tolist(),
                          t.threshold.tolist(), extra))
        self._trees = trees
        self._norm = _avg_path(float(forest.max_samples_))
        self._fitted = len(x)
        # the reference's own scores calibrate a new one: its rank among them, and beyond their
        # top ``k`` an exponential tail fitted to those k (peaks over threshold)
        ref = sorted(self._raw(row) for row in x.tolist())
        self._ref_scores = ref
        k = min(10, len(ref) - 1)
        top = ref[-k:]
        self._u = ref[-k - 1]
        self._sig = max(sum(top) / k - self._u, 1e-6)
        self._k_frac = k / (len(ref) + 1.0)

    def _tail(self, s: float) -> float:
        """Tail probability of an isolation score against the reference's scores."""
        if s > self._u:
            return self._k_frac * math.exp(-(s - self._u) / self._sig)
        ref = self._ref_scores
        return (len(ref) - bisect_left(ref, s) + 1.0) / (len(ref) + 1.0)

    def _raw(self, vec: Sequence[float]) -> float:
        """The isolation score 2 ** (-mean depth / c(n)), in (0, 1]; higher is more isolated."""
        total = 0.0
        for left, right, feat, thr, extra in self._trees:
            node = 0
            depth = 0
            while left[node] != -1:
                node = left[node] if vec[feat[node]] <= thr[node] else right[node]
                depth += 1
            total += depth + extra[node]
        return 2.0 ** (-(total / len(self._trees)) / self._norm)

    def update(self, ts: float, value: float | Sequence[float]) -> Score:
        c = self.config
        if isinstance(value, (int, float)):
            v = float(value)
            if not _finite(v):
                return Score(0.0, math.nan, math.nan, math.nan)
            vec = self._features(v)
            self._win.append(v)
            if len(self._win) > c.window:
                del self._win[0]
        else:
            vec = [float(x) for x in value]
            if any(not _finite(x) for x in vec):
                return Score(0.0, math.nan, math.nan, math.nan)
        s = 0.0
        if self._trees:
            p = self._tail(self._raw(vec))
            s = surprise_to_score(p, c.score_scale)
        # the buffer holds the last fit's reference plus the points since, so a restore can refit it
        self._ref.append(vec)
        if len(self._ref) > c.reference + c.refit_every:
            del self._ref[0]
        self._since += 1
        if (not self._trees and len(self._ref) >= min(c.warmup, c.reference)) or self._since >= c.refit_every:
            self._since = 0
            self._fit()
        out = self._gate(s)
        return Score(out, math.nan, math.nan, math.nan)

    def get_state(self) -> dict[str, Any]:
        # the forest itself is not stored: the reference it was fitted on is (the buffer up to
        # ``since`` points ago), and refitting is deterministic (fixed random_state)
        return {"ref": self._ref, "win": self._win, "since": self._since, "fit": self._fitted,
                "cal": self._cal.get_state(), "g": self._gate.get_state()}

    def set_state(self, state: dict[str, Any]) -> None:
        self._ref = [[float(x) for x in r] for r in state["ref"]]
        self._win = [float(x) for x in state["win"]]
        self._since = int(state["since"])
        self._cal.set_state(state["cal"])
        self._gate.set_state(state["g"])
        self._trees = []
        self._fitted = 0
        if state["fit"]:
            self._fit()
