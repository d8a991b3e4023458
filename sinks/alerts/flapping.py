"""Flapping (Kibana's rule): an alert that changed state at least `changes` times in its last
`window` evaluations is held (not notified) until it is stable again; its release says so.

An evaluation is one window of the alert's series, as a Kibana evaluation is one rule run - not one
record: the windows between two records (the series back inside its band while the episode is still
open, or quiet after a resolve) count too, in the state the alert kept, so an incident that recurs
once an hour is not flapping, however many times it has recurred. A record for a window already
evaluated (a redelivery, a replay) does not count again.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field
from itertools import repeat


@dataclass(slots=True)
class _History:
    states: deque[bool]
    changes: int = 0  # state changes between consecutive entries of `states`
    last_at: float = field(default=float("-inf"))


class Flapping:
    def __init__(self, window: int = 20, changes: int = 4, enabled: bool = True) -> None:
        self.window, self.changes, self.enabled = window, changes, enabled
        self._hist: dict[str, _History] = {}
        self._held: set[str] = set()
        self.released: set[str] = set()

    def _push(self, h: _History, firing: bool) -> None:
        s = h.states
        if len(s) == self.window:
            first = s.popleft()
            if s and s[0] != first:
                h.changes -= 1
        if s and s[-1] != firing:
            h.changes += 1
        s.append(firing)

    def evaluate(self, fp: str, firing: bool, at: float | None = None, step: float | None = None) -> bool:
        """Record the alert's state at the window ending `at` (windows `step` seconds apart). Without
        them (records that carry no window) every call is one evaluation. True when this held or
        released the alert (its notifications change)."""
        h = self._hist.get(fp)
        if h is None:
            h = self._hist[fp] = _History(deque(maxlen=self.window))
        if at is not None:
            if at < h.last_at or (at == h.last_at and h.states and h.states[-1] == firing):
                return False  # an older window, or this window again: already evaluated
            if step and h.states and h.last_at != float("-inf"):
                quiet = int((at - h.last_at) / step + 0.5) - 1  # windows without a record: same state
                if quiet >= self.window:
                    last = h.states[-1]
                    h.states.clear()
                    h.states.extend(repeat(last, self.window))
                    h.changes = 0
                else:
                    for _ in range(quiet):
                        self._push(h, h.states[-1])
            h.last_at = at
        self._push(h, firing)
        if not self.enabled:
            return False
        if h.changes >= self.changes:
            if fp in self._held:
                return False
            self._held.add(fp)
            self.released.discard(fp)
            return True
        if fp in self._held:
            self._held.discard(fp)
            self.released.add(fp)
            return True
        return False

    def held(self, fp: str) -> bool:
        return fp in self._held

    def forget(self, fp: str) -> None:
        self._hist.pop(fp, None)
        self._held.discard(fp)
        self.released.discard(fp)
