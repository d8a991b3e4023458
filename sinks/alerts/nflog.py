"""The notification log (Alertmanager's nflog/): per group and receiver, what was last sent and when.

It decides whether a group's flush needs a notification (new firing alerts, newly resolved ones, or
the repeat interval passed) and survives restarts: entries are plain data, written to a compacted
topic keyed by `group_key/receiver` and read back at start. `sent` counts the notifications logged
for the key: a notification's id is made from it (see `dispatch.Notification.id`), so a notification
re-sent because it was never logged (a crash after delivery) carries the id it had.
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
    sent: int = 1  # notifications logged for this key, this one included

    def to_plain(self) -> dict[str, Any]:
        return {"firing": sorted(self.firing), "resolved": sorted(self.resolved), "sent_at": self.sent_at,
                "content_hash": self.content_hash, "sent": self.sent}

    @classmethod
    def from_plain(cls, d: dict[str, Any]) -> Entry:
        """An entry as written; one written before `sent` existed counts as one notification."""
        return cls(frozenset(d["firing"]), frozenset(d["resolved"]), float(d["sent_at"]), str(d["content_hash"]),
                   int(d.get("sent", 1)))


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

    def sent_before(self, key: str) -> int:
        """How many notifications the log holds as sent for `key` (0: none, or the key was dropped)."""
        e = self.entries.get(key)
        return 0 if e is None else e.sent

    def record(self, key: str, firing: frozenset[str], resolved: frozenset[str], now: float,
               content_hash: str, *, seq: int | None = None) -> Entry:
        """Log a notification as sent; `seq` is how many the log held when it was made (its place in
        the key's history), so the count is right even if the key was logged meanwhile."""
        before = self.sent_before(key)
        e = Entry(firing, resolved, now, content_hash, max(before, seq if seq is not None else before) + 1)
        self.entries[key] = e
        return e

    def load(self, key: str, plain: dict[str, Any] | None) -> None:
        """Apply one record read from the durable log (None: a tombstone)."""
        if plain is None:
            self.entries.pop(key, None)
        else:
            self.entries[key] = Entry.from_plain(plain)
