"""The notification log (Alertmanager's nflog/): per group and receiver, what was last sent and when.

It decides whether a group's flush needs a notification (new firing alerts, newly resolved ones, or
the repeat interval passed) and survives restarts: entries are plain data, written to a compacted
topic keyed by `group_key/receiver` and read back at start.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any


@dataclass(slots=True)
class Entry:
    firing: frozenset[str]
    resolved: frozenset[str]
    sent_at: float
    content_hash: str

    def to_plain(self) -> dict[str, Any]:
        return {"firing": sorted(self.firing), "resolved": sorted(self.resolved), "sent_at": self.sent_at,
                "content_hash": self.content_hash}

    @classmethod
    def from_plain(cls, d: dict[str, Any]) -> Entry:
        return cls(frozenset(d["firing"]), frozenset(d["resolved"]), float(d["sent_at"]), str(d["content_hash"]))


def log_key(group_key: str, receiver: str) -> str:
    return f"{group_key}/{receiver}"


class NotificationLog:
    def __init__(self) -> None:
        self.entries: dict[str, Entry] = {}

    def needs_update(self, key: str, firing: frozenset[str], resolved: frozenset[str], *, send_resolved: bool,
                     repeat_interval: float, now: float) -> bool:
        """Alertmanager's DedupStage rule, plus: a resolve is never sent for alerts never notified."""
        e = self.entries.get(key)
        if e is None:
            return bool(firing)
        if not firing <= e.firing:
            return True
        if firing == frozenset() and e.firing:
            return bool(resolved & e.firing)
        if send_resolved and not (resolved & e.firing) <= e.resolved:
            return True
        return bool(firing) and now >= e.sent_at + repeat_interval

    def record(self, key: str, firing: frozenset[str], resolved: frozenset[str], now: float,
               content_hash: str) -> Entry:
        e = Entry(firing, resolved, now, content_hash)
        self.entries[key] = e
        return e

    def load(self, key: str, plain: dict[str, Any] | None) -> None:
        """Apply one record read from the durable log (None: a tombstone)."""
        if plain is None:
            self.entries.pop(key, None)
        else:
            self.entries[key] = Entry.from_plain(plain)
