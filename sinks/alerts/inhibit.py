"""Inhibition (Alertmanager's inhibit/): a firing source alert mutes matching targets that share the
`equal` labels; an alert never inhibits itself.

Kept incrementally: the dispatcher reports each alert that starts or stops firing, and the index holds,
per rule, the firing sources by their `equal` label values. Whether an alert's labels match a rule's
source and target matchers is computed once per fingerprint (labels do not change under one).
"""

from __future__ import annotations

from dataclasses import dataclass

from logtide.sinks.alerts.config import InhibitRule
from logtide.sinks.alerts.model import Alert, Matcher, matches_all

Key = tuple[int, tuple[str, ...]]  # (rule index, values of its `equal` labels)


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
    """Answers `inhibited_by(alert)` against the alerts currently firing."""

    def __init__(self, rules: list[Rule]) -> None:
        self.rules = rules
        self._sources: list[dict[tuple[str, ...], set[str]]] = [{} for _ in rules]
        # per fingerprint: the (rule, equal values) it is a source under, and those it is a target under
        self._keys: dict[str, tuple[tuple[Key, ...], tuple[Key, ...]]] = {}
        self.key_version: dict[Key, int] = {}  # bumped when its sources change
        self.changed: set[Key] = set()  # keys bumped since the last take_changed

    def _keys_of(self, a: Alert) -> tuple[tuple[Key, ...], tuple[Key, ...]]:
        k = self._keys.get(a.fp)
        if k is None:
            if len(self._keys) > 200_000:
                self._keys.clear()
            src: list[Key] = []
            tgt: list[Key] = []
            for i, r in enumerate(self.rules):
                key = (i, tuple(a.labels.get(e, "") for e in r.equal))
                if matches_all(r.source, a.labels):
                    src.append(key)
                if matches_all(r.target, a.labels):
                    tgt.append(key)
            k = self._keys[a.fp] = (tuple(src), tuple(tgt))
        return k

    def firing(self, a: Alert) -> None:
        """This alert fires now (idempotent)."""
        for i, key in self._keys_of(a)[0]:
            bucket = self._sources[i].setdefault(key, set())
            if a.fp not in bucket:
                bucket.add(a.fp)
                self.key_version[(i, key)] = self.key_version.get((i, key), 0) + 1
                self.changed.add((i, key))

    def stopped(self, a: Alert) -> None:
        """This alert resolved or went away (idempotent)."""
        for i, key in self._keys_of(a)[0]:
            bucket = self._sources[i].get(key)
            if bucket is not None and a.fp in bucket:
                bucket.discard(a.fp)
                self.key_version[(i, key)] = self.key_version.get((i, key), 0) + 1
                self.changed.add((i, key))
                if not bucket:
                    del self._sources[i][key]

    def take_changed(self) -> set[Key]:
        """The keys whose sources changed since the last call."""
        out, self.changed = self.changed, set()
        return out

    def deps(self, a: Alert) -> tuple[Key, ...]:
        """The (rule, equal values) whose sources decide whether this alert is inhibited."""
        return self._keys_of(a)[1]

    def stamp(self, deps: set[Key]) -> int:
        """Changes whenever the sources behind any of these deps change (versions only grow)."""
        kv = self.key_version
        return sum(kv.get(d, 0) for d in deps)

    def inhibited_by(self, alert: Alert) -> str | None:
        """The fingerprint of a firing alert that inhibits this one, or None."""
        for i, key in self._keys_of(alert)[1]:
            srcs = self._sources[i].get(key)
            if srcs:
                for fp in srcs:
                    if fp != alert.fp:
                        return fp
        return None
