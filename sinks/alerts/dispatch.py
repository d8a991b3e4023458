"""The dispatcher (Alertmanager's dispatch/ + the notify pipeline's mute and dedup stages), pure.

`ingest(anomaly, now)` turns anomaly records into alerts and puts each into the aggregation group of
every route it matches; `advance(now)` flushes the groups whose timer is due, in time order and each
at its own due time, and returns the notifications to send. Time is always passed in: the wall clock
when live, event time when replaying, so hours of history replayed in seconds group, wait and
resolve as they would have live. The caller reports each delivery with `delivered(...)`; only then
is it written to the notification log (so a receiver that was down gets it at the next flush).
"""

from __future__ import annotations

import hashlib
import heapq
from collections import Counter, OrderedDict
from dataclasses import dataclass, field

from logtide.schemas import Anomaly
from logtide.sinks.alerts.config import AlertsConfig
from logtide.sinks.alerts.flapping import Flapping
from logtide.sinks.alerts.inhibit import Inhibitor, Rule
from logtide.sinks.alerts.model import Alert, alert_annotations, alert_labels, fingerprint, is_resolve
from logtide.sinks.alerts.nflog import Entry, NotificationLog, log_key
from logtide.sinks.alerts.routing import Route, build_route
from logtide.sinks.alerts.silence import Silences

SUPPRESS_REASONS = ("silenced", "inhibited", "flapping", "grouped")


@dataclass(slots=True)
class Group:
    route: Route
    key: str
    labels: dict[str, str]
    fps: set[str] = field(default_factory=set)
    next_flush: float = 0.0
    in_flight: bool = False
    dirty: bool = True  # something that can change the next flush's decision happened
    stamp: tuple[int, int] = (-1, -1)  # silences and inhibitor versions at the last full flush
    deps: set[tuple[int, tuple[str, ...]]] = field(default_factory=set)  # inhibition keys it depends on
    last_t: float = float("-inf")
    retired: bool = False  # its route left the tree in a reload: it only sends the resolves it owes


@dataclass(slots=True)
class Notification:
    """One message for one receiver about one group: its firing and (newly) resolved alerts."""

    receiver: str
    group_key: str
    group_labels: dict[str, str]
    alerts: list[Alert]
    firing: frozenset[str]
    resolved: frozenset[str]
    at: float
    content_hash: str
    released: list[str] = field(default_factory=list)
    only: str | None = None  # set on re-sends: the one integration kind it is for; not logged

    @property
    def status(self) -> str:
        return "firing" if self.firing else "resolved"

    @property
    def log_key(self) -> str:
        return log_key(self.group_key, self.receiver)

    @property
    def id(self) -> str:
        """Stable across retries of this notification (receivers deduplicate on it)."""
        return "msg_" + hashlib.sha256(f"{self.log_key}|{self.content_hash}|{self.at}".encode()).hexdigest()[:24]


def group_key(route: Route, labels: dict[str, str]) -> str:
    return f"{route.id}:{{" + ",".join(f'{k}="{labels[k]}"' for k in sorted(labels)) + "}"


def _content_hash(gk: str, alerts: list[Alert]) -> str:
    h = hashlib.sha256(gk.encode())
    for a in sorted(alerts, key=lambda a: a.fp):
        h.update(f"|{a.fp}:{a.status}".encode())
    return h.hexdigest()[:16]


class Dispatcher:
    def __init__(self, cfg: AlertsConfig, silences: Silences | None = None, nflog: NotificationLog | None = None,
                 send_resolved: dict[str, bool] | None = None) -> None:
        self.cfg = cfg
        self.route = build_route(cfg.route)
        self.silences = silences if silences is not None else Silences()
        self.nflog = nflog if nflog is not None else NotificationLog()
        self.inhibitor = Inhibitor([Rule.from_config(r) for r in cfg.inhibit_rules])
        self.flapping = Flapping(cfg.flapping.window, cfg.flapping.changes, cfg.flapping.enabled)
        self.send_resolved = send_resolved or {}
        self.alerts: dict[str, Alert] = {}
        self.alert_groups: dict[str, set[str]] = {}
        self.episodes: dict[str, set[str]] = {}
        self.closed: OrderedDict[str, None] = OrderedDict()
        self.groups: dict[str, Group] = {}
        self._timers: list[tuple[float, str]] = []  # (due, group key), stale entries skipped
        self.now = float("-inf")
        self.suppressed: Counter[str] = Counter()
        self.ignored: Counter[str] = Counter()
        self._route_cache: dict[tuple[tuple[str, str], ...], list[Route]] = {}

    # --- input ------------------------------------------------------------------------------------
    def ingest(self, a: Anomaly, now: float) -> None:
        """One anomaly record (firing or resolved) at time `now`."""
        self.now = max(self.now, now)
        ep = a.episode_id
        ts = a.timestamp.timestamp()
        if is_resolve(a):
            fps = self.episodes.pop(ep, None)
            self._close(ep)
            if not fps:
                self.ignored["resolve_without_firing"] += 1
                return
            for fp in fps:
                al = self.alerts.get(fp)
                if al is not None and not al.resolved():
                    # resolved as of when it became known (a flush for an earlier time still sees it firing)
                    al.ends_at = max(al.starts_at, self.now)
                    al.updated_at = max(al.updated_at, ts)
                    self.flapping.evaluate(fp, False)
                    self.inhibitor.stopped(al)
                    for gk in self.alert_groups.get(fp, ()):
                        self.groups[gk].dirty = True
            return
        if ep in self.closed:
            self.ignored["firing_after_resolve"] += 1
            return
        labels = alert_labels(a, self.cfg.static_labels)
        fp = fingerprint(labels)
        start = a.episode.start.timestamp() if a.episode else (a.window.start.timestamp() if a.window else ts)
        al = self.alerts.get(fp)
        if al is None or al.resolved():
            al = Alert(labels, alert_annotations(a), min(start, self.now), None, ts,
                       f"{self.cfg.external_url.rstrip('/')}/anomalies/{ep}", ep, fp)
            self.alerts[fp] = al
            self.inhibitor.firing(al)
        else:
            al.annotations = alert_annotations(a)
            al.updated_at = max(al.updated_at, ts)
        if a.episode is None:
            al.episode = ep
        self.episodes.setdefault(ep, set()).add(fp)
        self.flapping.evaluate(fp, True)
        for r in self._routes(labels):
            gl = r.group_labels(labels)
            gk = group_key(r, gl)
            g = self.groups.get(gk)
            if g is None:
                g = self.groups[gk] = Group(r, gk, gl, next_flush=self.now + r.group_wait)
                heapq.heappush(self._timers, (g.next_flush, gk))
            elif fp in g.fps:
                self.suppressed["grouped"] += 1
            g.fps.add(fp)
            g.dirty = True
            self.alert_groups.setdefault(fp, set()).add(gk)

    def _routes(self, labels: dict[str, str]) -> list[Route]:
        key = tuple(sorted(labels.items()))
        got = self._route_cache.get(key)
        if got is None:
            if len(self._route_cache) > 100_000:
                self._route_cache.clear()
            got = self._route_cache[key] = self.route.match(labels)
        return got

    def routing_changed(self) -> None:
        """Forget cached routing decisions (a reload replaced the tree, see `reconfigure`)."""
        self._route_cache.clear()

    def _close(self, ep: str) -> None:
        self.closed[ep] = None
        if len(self.closed) > 100_000:
            self.closed.popitem(last=False)

    # --- timers -----------------------------------------------------------------------------------
    def due(self) -> float | None:
        """When the next group flush is due (None: no group)."""
        return min((g.next_flush for g in self.groups.values() if not g.in_flight), default=None)

    def advance(self, now: float) -> list[Notification]:
        """Flush every group due at or before `now`, earliest first; the notifications to send."""
        self.now = max(self.now, now)
        out: list[Notification] = []
        waiting: list[tuple[float, str]] = []
        while self._timers and self._timers[0][0] <= self.now:
            due, gk = heapq.heappop(self._timers)
            g = self.groups.get(gk)
            if g is None or g.next_flush != due:
                continue  # stale timer
            if g.in_flight:
                waiting.append((due, gk))  # flushes again once its delivery is reported
                continue
            n = self._flush(g, due)
            if gk in self.groups:
                heapq.heappush(self._timers, (g.next_flush, gk))
            if n is not None:
                out.append(n)
        for item in waiting:
            heapq.heappush(self._timers, item)
        return out

    def _unchanged(self, g: Group, t: float) -> bool:
        """True when this flush must decide as the last one did: nothing in the group changed, no
        silence changed or started or ended since, no inhibiting alert changed, no repeat is due."""
        if g.dirty or g.stamp != (self.silences.version, self.inhibitor.stamp(g.deps)):
            return False
        if self.silences.changes_between(g.last_t, t):
            return False
        e = self.nflog.entries.get(log_key(g.key, g.route.receiver))
        return e is None or not e.firing or t < e.sent_at + g.route.repeat_interval

    def _flush(self, g: Group, t: float) -> Notification | None:
        g.next_flush = t + g.route.group_interval
        if g.retired and not any(self.alerts[fp].ends_at is not None and self.alerts[fp].ends_at <= t for fp in g.fps):
            return None  # retired by a reload: no repeats, only the resolves of what it notified
        if self._unchanged(g, t):
            g.last_t = t
            return None
        g.deps = {d for fp in g.fps for d in self.inhibitor.deps(self.alerts[fp])}
        g.dirty, g.stamp, g.last_t = False, (self.silences.version, self.inhibitor.stamp(g.deps)), t
        timeout = self.cfg.resolve_timeout
        firing: set[str] = set()
        resolved: set[str] = set()
        shown: list[Alert] = []
        for fp in sorted(g.fps):
            al = self.alerts[fp]
            if not al.resolved() and al.episode not in self.episodes:
                if al.updated_at + timeout <= t:
                    al.ends_at = al.updated_at + timeout  # a record without episode that went quiet
                    self.inhibitor.stopped(al)
                else:
                    g.dirty = True  # it may time out by the next flush
            is_resolved = al.ends_at is not None and al.ends_at <= t
            if al.ends_at is not None and al.ends_at > t:
                g.dirty = True  # resolved after this flush's time: the next flush sees it change
            if not is_resolved:
                reason = (
                    "silenced" if self.silences.silenced_for(fp, al.labels, t) else
                    "inhibited" if self.inhibitor.inhibited_by(al) else
                    "flapping" if self.flapping.held(fp) else None
                )  # fmt: skip
                if reason is not None:
                    self.suppressed[reason] += 1
                    continue
                firing.add(fp)
            else:
                if self.flapping.held(fp):
                    self.suppressed["flapping"] += 1
                    continue
                resolved.add(fp)
            shown.append(al)
        key = log_key(g.key, g.route.receiver)
        prev = self.nflog.entries.get(key)
        ff, rr = frozenset(firing), frozenset(resolved)
        send_resolved = self.send_resolved.get(g.route.receiver, True)
        if not self.nflog.needs_update(key, ff, rr, send_resolved=send_resolved,
                                      repeat_interval=g.route.repeat_interval, now=t):
            self._cleanup(g, rr, prev)
            return None
        notified_before = prev.firing if prev else frozenset()
        shown = [a for a in shown if a.fp in ff or a.fp in notified_before]  # no resolve before its firing
        released = [a.fp for a in shown if a.fp in self.flapping.released]
        alerts = [a.copy() for a in shown]
        for a in alerts:
            if a.fp in released:
                a.annotations["flapping"] = "was flapping and held back; stable again"
        g.in_flight = True
        return Notification(g.route.receiver, g.key, dict(g.labels), alerts, ff, rr & notified_before, t,
                            _content_hash(g.key, alerts), released)

    def firing_for(self, receiver: str, now: float) -> list[Alert]:
        """The alerts currently notified as firing to a receiver (for receivers that need re-sends)."""
        out: dict[str, Alert] = {}
        for g in self.groups.values():
            if g.route.receiver != receiver:
                continue
            e = self.nflog.entries.get(log_key(g.key, receiver))
            for fp in g.fps:
                al = self.alerts.get(fp)
                if al is not None and e is not None and fp in e.firing and not (al.ends_at is not None
                                                                                 and al.ends_at <= now):
                    out[fp] = al
        return list(out.values())

    def delivered(self, n: Notification, done: bool, now: float) -> Entry | None:
        """The outcome of a notification: done (sent, or dead-lettered for good) goes to the log;
        otherwise the next flush of the group tries again. Returns the log entry written, if any."""
        g = self.groups.get(n.group_key)
        if g is not None:
            g.in_flight = False
            g.dirty = True
        if not done:
            return None
        for fp in n.released:
            self.flapping.released.discard(fp)
        prev = self.nflog.entries.get(n.log_key)
        entry = self.nflog.record(n.log_key, n.firing, n.resolved | (prev.resolved if prev else frozenset()),
                                  n.at, n.content_hash)
        if g is not None:
            self._cleanup(g, n.resolved, entry)
        return entry

    def _cleanup(self, g: Group, resolved: frozenset[str], entry: Entry | None) -> None:
        """Drop resolved alerts that need no further notification; a group with none left goes."""
        for fp in list(g.fps):
            al = self.alerts[fp]
            if al.ends_at is None or al.ends_at > g.next_flush - g.route.group_interval:
                continue
            if fp in resolved or entry is None or fp not in entry.firing or fp in entry.resolved:
                g.fps.discard(fp)
                groups = self.alert_groups.get(fp)
                if groups is not None:
                    groups.discard(g.key)
                    if not groups:
                        del self.alert_groups[fp]
                        if self.alerts.get(fp) is al:
                            del self.alerts[fp]
                            self.inhibitor.stopped(al)
        if not g.fps and not g.in_flight:
            del self.groups[g.key]
            if entry is not None and not entry.firing:
                self.nflog.entries.pop(log_key(g.key, g.route.receiver), None)
