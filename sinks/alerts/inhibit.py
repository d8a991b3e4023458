"""Inhibition (Alertmanager's inhibit/): a firing source alert mutes matching targets that share the
`equal` labels; an alert never inhibits itself."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from logtide.sinks.alerts.config import InhibitRule
from logtide.sinks.alerts.model import Alert, Matcher, matches_all


@dataclass(frozen=True, slots=True)
class Rule:
    source: tuple[Matcher, ...]
    target: tuple[Matcher, ...]
    equal: tuple[str, ...]

    @classmethod
    def from_config(cls, c: InhibitRule) -> Rule:
        return cls(tuple(map(Matcher.parse, c.source_matchers)), tuple(map(Matcher.parse, c.target_matchers)),
                   tuple(c.equal))


class Inhibitor:
    """Answers `inhibited(alert)` against the current set of firing alerts (indexed per rule)."""

    def __init__(self, rules: list[Rule]) -> None:
        self.rules = rules
        # per rule: equal-label values -> fingerprints of firing sources
        self._sources: list[dict[tuple[str, ...], set[str]]] = [{} for _ in rules]

    def update(self, alerts: Iterable[Alert]) -> None:
        """Rebuild the firing-source index (called when alerts change)."""
        self._sources = [{} for _ in self.rules]
        for a in alerts:
            if a.resolved():
                continue
            for i, r in enumerate(self.rules):
                if matches_all(r.source, a.labels):
                    key = tuple(a.labels.get(e, "") for e in r.equal)
                    self._sources[i].setdefault(key, set()).add(a.fp)

    def inhibited_by(self, alert: Alert) -> str | None:
        """The fingerprint of a firing alert that inhibits this one, or None."""
        for i, r in enumerate(self.rules):
            if not self._sources[i] or not matches_all(r.target, alert.labels):
                continue
            srcs = self._sources[i].get(tuple(alert.labels.get(e, "") for e in r.equal))
            if srcs:
                for fp in srcs:
                    if fp != alert.fp:
                        return fp
        return None
