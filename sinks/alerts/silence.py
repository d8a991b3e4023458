"""Silences (Alertmanager's silence/): matchers plus a time range, an author and a comment.

Pure: `Silences` holds them and answers which active silence mutes a label set at a given time.
Durable storage (a compacted Kafka topic, or a file for the embedded runner) is an adapter that feeds
`put` with what it reads; expiring sets the end to now, so an expired silence stays listed.
Silences with an equality matcher are indexed by one (the least shared), so 1,000 silences do not
mean 1,000 checks.
"""

from __future__ import annotations

import bisect
import uuid
from dataclasses import dataclass, field
from typing import Any

from logtide.sinks.alerts.model import Matcher, matches_all


@dataclass(slots=True)
class Silence:
    id: str
    matchers: list[str]
    starts_at: float
    ends_at: float
    created_by: str
    comment: str
    updated_at: float
    _parsed: tuple[Matcher, ...] = field(default=(), init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        if not self.matchers:
            raise ValueError("a silence needs at least one matcher")
        if self.ends_at <= self.starts_at:
            raise ValueError("a silence must end after it starts")
        self._parsed = tuple(Matcher.parse(m) for m in self.matchers)

    @classmethod
    def new(cls, matchers: list[str], *, starts_at: float, ends_at: float, created_by: str, comment: str,
            now: float) -> Silence:
        return cls(str(uuid.uuid4()), list(matchers), starts_at, ends_at, created_by, comment, now)

    @property
    def parsed(self) -> tuple[Matcher, ...]:
        return self._parsed

    def active(self, now: float) -> bool:
        return self.starts_at <= now < self.ends_at

    def state(self, now: float) -> str:
        return "pending" if now < self.starts_at else "active" if now < self.ends_at else "expired"

    def to_plain(self) -> dict[str, Any]:
        return {"id": self.id, "matchers": self.matchers, "starts_at": self.starts_at, "ends_at": self.ends_at,
                "created_by": self.created_by, "comment": self.comment, "updated_at": self.updated_at}

    @classmethod
    def from_plain(cls, d: dict[str, Any]) -> Silence:
        return cls(str(d["id"]), list(d["matchers"]), float(d["starts_at"]), float(d["ends_at"]),
                   str(d.get("created_by", "")), str(d.get("comment", "")), float(d.get("updated_at", 0)))


class Silences:
    """The set of known silences, indexed by one equality matcher each."""

    def __init__(self) -> None:
        self.by_id: dict[str, Silence] = {}
        self._index: dict[tuple[str, str], dict[str, Silence]] = {}
        self._scan: dict[str, Silence] = {}
        self.version = 0
        self._bounds: list[float] = []  # every start and end seen (sorted): when a silence's effect changes
        self._cache: dict[str, tuple[int, tuple[Silence, ...]]] = {}

    def put(self, s: Silence) -> None:
        """Add or replace (the newer `updated_at` wins, so replays of the store are idempotent)."""
        old = self.by_id.get(s.id)
        if old is not None:
            if old.updated_at > s.updated_at:
                return
            self._unindex(old)
        self.by_id[s.id] = s
        self.version += 1
        bisect.insort(self._bounds, s.starts_at)
        bisect.insort(self._bounds, s.ends_at)
        eqs = [(m.name, m.value) for m in s.parsed if m.op == "=" and m.value]
        if not eqs:
            self._scan[s.id] = s
        else:  # under its equality matcher with the fewest silences so far: short buckets to check
            key = min(eqs, key=lambda k: len(self._index.get(k, ())))
            self._index.setdefault(key, {})[s.id] = s

    def _unindex(self, s: Silence) -> None:
        self._scan.pop(s.id, None)
        for bucket in self._index.values():
            bucket.pop(s.id, None)

    def expire(self, sid: str, now: float) -> Silence:
        """End a silence now (kept, listed as expired); a KeyError names an unknown id."""
        s = self.by_id[sid]
        if s.ends_at <= now:
            return s
        e = Silence(s.id, s.matchers, min(s.starts_at, now - 1e-3), now, s.created_by, s.comment,
                    max(now, s.updated_at + 1e-6))
        self.put(e)
        return e

    def silenced_by(self, labels: dict[str, str], now: float) -> str | None:
        """The id of an active silence that matches these labels, or None."""
        for k, v in labels.items():
            bucket = self._index.get((k, v))
            if bucket:
                for s in bucket.values():
                    if s.active(now) and matches_all(s.parsed, labels):
                        return s.id
        for s in self._scan.values():
            if s.active(now) and matches_all(s.parsed, labels):
                return s.id
        return None

    def changes_between(self, a: float, b: float) -> bool:
        """Does some silence start or end in (a, b]?"""
        i = bisect.bisect_right(self._bounds, a)
        return i < len(self._bounds) and self._bounds[i] <= b

    def next_change_after(self, t: float) -> float | None:
        """The first start or end of a silence after `t`, if any."""
        i = bisect.bisect_right(self._bounds, t)
        return self._bounds[i] if i < len(self._bounds) else None

    def matching(self, labels: dict[str, str]) -> tuple[Silence, ...]:
        """Every silence whose matchers match these labels, whatever its time range."""
        out: list[Silence] = []
        for k, v in labels.items():
            bucket = self._index.get((k, v))
            if bucket:
                out.extend(s for s in bucket.values() if matches_all(s.parsed, labels))
        out.extend(s for s in self._scan.values() if matches_all(s.parsed, labels))
        return tuple(out)

    def silenced_for(self, fp: str, labels: dict[str, str], now: float) -> str | None:
        """`silenced_by`, with the matching silences remembered per fingerprint until silences change."""
        hit = self._cache.get(fp)
        if hit is None or hit[0] != self.version:
            if len(self._cache) > 200_000:
                self._cache.clear()
            hit = self._cache[fp] = (self.version, self.matching(labels))
        for s in hit[1]:
            if s.active(now):
                return s.id
        return None

    def list(self) -> list[Silence]:
        return sorted(self.by_id.values(), key=lambda s: (s.starts_at, s.id))
