"""Flapping (Kibana's rule): an alert that changed state at least `changes` times in its last
`window` evaluations is held (not notified) until it is stable again; its release says so."""

from __future__ import annotations

from collections import deque


class Flapping:
    def __init__(self, window: int = 20, changes: int = 4, enabled: bool = True) -> None:
        self.window, self.changes, self.enabled = window, changes, enabled
        self._hist: dict[str, deque[bool]] = {}
        self._held: set[str] = set()
        self.released: set[str] = set()

    def evaluate(self, fp: str, firing: bool) -> None:
        """Record one evaluation of an alert (firing or not)."""
        h = self._hist.get(fp)
        if h is None:
            h = self._hist[fp] = deque(maxlen=self.window)
        h.append(firing)
        if not self.enabled:
            return
        n = sum(1 for a, b in zip(h, list(h)[1:], strict=False) if a != b)
        if n >= self.changes:
            self._held.add(fp)
            self.released.discard(fp)
        elif fp in self._held:
            self._held.discard(fp)
            self.released.add(fp)

    def held(self, fp: str) -> bool:
        return fp in self._held

    def forget(self, fp: str) -> None:
        self._hist.pop(fp, None)
        self._held.discard(fp)
        self.released.discard(fp)
