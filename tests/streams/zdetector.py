"""A small deterministic detector for stream tests: z-score against a running mean after a warm-up.

Stream tests check the wiring (the right windows reach a detector, scores become anomalies, state
survives restarts); they use this detector so they do not depend on the tuning of the production one.
It is a real `detectors.Detector` (registered under `test_z`), so state goes through `to_bytes`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from logtide.detectors.base import Detector, Score

from logtide import detectors


@dataclass
class ZConfig:
    warmup: int = 20
    z_alarm: float = 6.0


class ZDetector(Detector):
    name = "test_z"
    Config = ZConfig

    def reset(self) -> None:
        self.n, self.mean, self.m2 = 0, 0.0, 0.0

    def update(self, ts: float, value: float) -> Score:
        sd = math.sqrt(self.m2 / self.n) if self.n > 1 else 0.0
        sd = max(sd, 1e-3 * (abs(self.mean) + 1e-3))
        band = 3 * sd
        score = 0.0
        if self.n >= self.config.warmup:
            z = abs(value - self.mean) / sd
            score = min(1.0, 0.5 * z / self.config.z_alarm)
        expected = self.mean
        if score < 0.5:  # learn from normal points only
            self.n += 1
            d = value - self.mean
            self.mean += d / self.n
            self.m2 += d * (value - self.mean)
        return Score(score, expected, expected - band, expected + band)

    def get_state(self) -> dict:
        return {"n": self.n, "mean": self.mean, "m2": self.m2}

    def set_state(self, state: dict) -> None:
        self.n, self.mean, self.m2 = int(state["n"]), float(state["mean"]), float(state["m2"])


def register() -> None:
    detectors.REGISTRY.setdefault(ZDetector.name, ZDetector)
