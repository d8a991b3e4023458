"""The dispatcher (Alertmanager's dispatch/ + the notify pipeline's mute and dedup stages), pure.

`ingest(anomaly, now)` turns anomaly records into alerts and puts each into the aggregation group of
every route it matches; `advance(now)` flushes the groups whose timer is due, in time order and each
at its own due time, and returns the notifications to send. Time is always passed in: the wall clock
when live, event time when replaying, so hours of history replayed in seconds group, wait and
resolve as they would have live. The caller reports each delivery with `delivered(...)`; only then
is it written to the notification log (so a receiver that was down gets it at the next flush).

Per record, the work that depends only on the label set (labels, fingerprint, routes, group keys) is
done once per label set (a bounded LRU). A group whose flush decided as the last one sleeps: its
timer jumps to the first point of its schedule at or after the next repeat or silence bound, and an
event (a record for it, a resolve, a delivery outcome, a silence change, an inhibiting alert that
starts or stops) puts it back on its interval - it sends exactly what flushing at every interval
sends (tests/alerts/test_quiet_flushes.py).
"""

from __future__ import annotations

import hashlib
import heapq
import math
from collections import Counter, OrderedDict
from dataclasses import dataclass, field
from functools import lru_cache
from typing import NamedTuple

from logtide.schemas import Anomaly
from logtide.sinks.alerts.config import AlertsConfig
from logtide.sinks.alerts.facts import AnomalyFacts, facts_from_model
from logtide.sinks.alerts.flapping import Flapping
from logtide.sinks.alerts.inhibit import Inhibitor, Rule
from logtide.sinks.alerts.model import ALERTNAME, Alert, fingerprint
from logtide.sinks.alerts.nflog import Entry, NotificationLog, log_key
from logtide.sinks.alerts.routing import Route, build_route
from logtide.sinks.alerts.silence import Silences

SUPPRESS_REASONS = ("silenced", "inhibited", "flapping", "grouped")
LABEL_CACHE_SIZE = 65_536  # distinct label sets whose fingerprint and routes are kept


class Resolved(NamedTuple):
    """What a label set resolves to: the labels, their fingerprint, and every (route, group key,
    group labels) the routing tree sends the alert to. Labels never change under a fingerprint, so
    this is computed once per label set."""

    labels: dict[str, str]
    fp: str
    targets: tuple[tuple[Route, str, dict[str, str]], ...]
    group_keys: frozenset[str]


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
    sleeping: bool = False  # next_flush pushed past the next interval: nothing can change before it
    lk: tuple[str, str, str] | None = None  # (key, receiver, their notification-log key), made once

    def log_key(self) -> str:
        c = self.lk
        if c is None or c[0] != self.key or c[1] != self.route.receiver:  # a reload may rename or re-route
            c = self.lk = (self.key, self.route.receiver, log_key(self.key, self.route.receiver))
        return c[2]


@dataclass(slots=True)
class Notification:
    """One message for one receiver about one group: its firing and (newly) resolved alerts.

    `seq` is its place in the group's history: how many notifications the notification log held as
    sent for the group and receiver when it was made."""

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
    seq: int = 0

    @property
    def status(self) -> str:
        return "firing" if self.firing else "resolved"

    @property
    def log_key(self) -> str:
        return log_key(self.group_key, self.receiver)

    @property
    def id(self) -> str:
        """What receivers deduplicate on (`webhook-id`): the group and receiver, the content (each
        alert's fingerprint, status and episode) and `seq`, all of which the notification log and the
        anomaly records hold, never the flush time. So the same notification made again - retried at a
        later flush, or re-sent after a crash between its delivery and its log write, by this instance
        or the one that took over - has the same id; a reminder (`repeat_interval`), a changed alert
        set or a resolve comes after a logged notification (`seq` moved) or with other content, and
        has a new one."""
        return "msg_" + hashlib.sha256(f"{self.log_key}|{self.content_hash}|{self.seq}".encode()).hexdigest()[:24]


def group_key(route: Route, labels: dict[str, str]) -> str:
    return f"{route.id}:{{" + ",".join(f'{k}="{labels[k]}"' for k in sorted(labels)) + "}"


def _content_hash(gk: str, alerts: list[Alert], firing: frozenset[str]) -> str:
    """The group key and each alert's fingerprint, status as of the flush (a flush catching up after a
    restart may already know of a later resolve) and episode (for records without an episode id, the
    alert's start), so an alert firing again in a new episode is new content."""
    h = hashlib.sha256(gk.encode())
    for a in sorted(alerts, key=lambda a: a.fp):
        src = a.source
        episode = a.episode if src is None or src.has_episode else f"@{a.starts_at!r}"
        h.update(f"|{a.fp}:{'firing' if a.fp in firing else 'resolved'}:{episode}".encode())
    return h.hexdigest()[:16]


class Dispatcher:
    def __init__(self, cfg: AlertsConfig, silences: Silences | None = None, nflog: NotificationLog | None = None,
                 send_resolved: dict[str, bool] | None = None, *, skip_quiet_flushes: bool = True) -> None:
        self.cfg = cfg
        self.skip_quiet_flushes = skip_quiet_flushes
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
        self._resolve = lru_cache(maxsize=LABEL_CACHE_SIZE)(self._resolve_uncached)
        self._advanced = float("-inf")  # every timer due at or before this has been processed
        self._sleepers: dict[tuple[int, tuple[str, ...]], set[str]] = {}  # inhibition dep -> sleeping groups
        self._silences_seen = self.silences.version
        self.dropped_log: list[str] = []  # notification-log keys dropped here, for the caller to persist as gone

    # --- input ------------------------------------------------------------------------------------
    def ingest(self, a: Anomaly | AnomalyFacts, now: float) -> None:
        """One anomaly record (firing or resolved) at time `now`; a model or its decoded facts."""
        f = a if isinstance(a, AnomalyFacts) else facts_from_model(a)
        self.now = max(self.now, now)
        ep = f.episode_id
        ts = f.ts
        if f.resolved:
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
                    self.flapping.evaluate(fp, False, ts, f.window_step)
                    self.inhibitor.stopped(al)
                    for gk in self.alert_groups.get(fp, ()):
                        g = self.groups[gk]
                        g.dirty = True
                        if g.sleeping:
                            self._wake(g, self._advanced, inclusive=False)
            if self.inhibitor.changed:
                self._wake_inhibited(self._advanced, inclusive=False)
            return
        if ep in self.closed:
            self.ignored["firing_after_resolve"] += 1
            return
        r = self._resolve((tuple(f.series_labels.items()), f.metric, f.severity, f.stat))
        fp = r.fp
        al = self.alerts.get(fp)
        renewed = al is None or al.resolved()
        if renewed:
            start = f.episode_start if f.episode_start is not None else (
                f.window_start if f.window_start is not None else ts)
            url = f"{self.cfg.external_url.rstrip('/')}/anomalies/{ep}"  # the current config's (reloadable)
            al = Alert(r.labels, {}, min(start, self.now), None, ts, url, ep, fp, f)
            self.alerts[fp] = al
            self.inhibitor.firing(al)
        else:
            al.source = f
            al.updated_at = max(al.updated_at, ts)
        if not f.has_episode:
            al.episode = ep  # the record's own id: such an alert ends by resolve_timeout, not by a resolve
        else:
            eps = self.episodes.get(ep)
            if eps is None:
                self.episodes[ep] = {fp}
            else:
                eps.add(fp)
        flapped = self.flapping.evaluate(fp, True, ts, f.window_step)
        groups = self.groups
        quiet = self.skip_quiet_flushes and not (renewed or flapped)
        grouped = 0
        for route, gk, gl in r.targets:
            g = groups.get(gk)
            if g is None:
                g = groups[gk] = Group(route, gk, dict(gl), next_flush=self.now + route.group_wait)
                heapq.heappush(self._timers, (g.next_flush, gk))
            elif fp in g.fps:
                grouped += 1
                if quiet:
                    continue  # one more record of an alert this group already holds: nothing to decide
            g.fps.add(fp)
            g.dirty = True
            if g.sleeping:
                self._wake(g, self._advanced, inclusive=False)
        if grouped:
            self.suppressed["grouped"] += grouped
        if self.inhibitor.changed:
            self._wake_inhibited(self._advanced, inclusive=False)
        ag = self.alert_groups.get(fp)
        if ag is None:
            self.alert_groups[fp] = set(r.group_keys)
        elif grouped < len(r.targets):
            ag |= r.group_keys

    def routing_changed(self) -> None:
        """The routing tree or the groups were replaced (a configuration reload): forget the cached
        label-set decisions and put every sleeping group back on its interval."""
        self._resolve.cache_clear()
        for g in self.groups.values():
            if g.sleeping:
                self._wake(g, self._advanced, inclusive=False)
        self._sleepers.clear()

    def _resolve_uncached(self, key: tuple[tuple[tuple[str, str], ...], str, str, str | None]) -> Resolved:
        """An alert's labels, fingerprint and (route, group key, group labels) targets from the parts
        of a record that make its labels; cached per label set (`_resolve`, a bounded LRU)."""
        series_labels, metric, severity, stat = key
        labels = dict(self.cfg.static_labels)
        labels.update(series_labels)
        labels.update({"alertname": ALERTNAME, "metric": metric, "severity": severity})
        if stat is not None:
            labels["stat"] = stat
        targets = []
        for route in self.route.match(labels):
            gl = route.group_labels(labels)
            targets.append((route, group_key(route, gl), gl))
        return Resolved(labels, fingerprint(labels), tuple(targets), frozenset(gk for _, gk, _ in targets))

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
        if self.silences.version != self._silences_seen:  # a silence was added, changed or expired
            self._silences_seen = self.silences.version
            for g in list(self.groups.values()):
                if g.sleeping:
                    self._wake(g, self._advanced, inclusive=False)
        if self.inhibitor.changed:
            self._wake_inhibited(self._advanced, inclusive=False)
        while self._timers and self._timers[0][0] <= self.now:
            due, gk = heapq.heappop(self._timers)
            g = self.groups.get(gk)
            if g is None or g.next_flush != due:
                continue  # stale timer
            if g.in_flight:
                waiting.append((due, gk))  # flushes again once its delivery is reported
                continue
            if g.sleeping:
                self._unsleep(g)
            n = self._flush(g, due)
            if gk in self.groups and g.next_flush != float("inf"):
                heapq.heappush(self._timers, (g.next_flush, gk))
            if n is not None:
                out.append(n)
            if self.inhibitor.changed:
                self._wake_inhibited(due, inclusive=True)
        for item in waiting:
            heapq.heappush(self._timers, item)
        self._advanced = max(self._advanced, self.now)
        return out

    # --- sleeping groups: a quiet group's timer jumps to when its decision can next change --------
    def _sleep(self, g: Group, t: float) -> None:
        """After a flush that decided as the last one (nothing changed), skip the flushes that would
        decide the same: the next one that matters is at the first interval point at or after a
        repeat falling due or a silence starting or ending; an event in between wakes the group."""
        interval = g.route.group_interval
        wake = float("inf")
        e = self.nflog.entries.get(g.log_key())
        if e is not None and e.firing:
            wake = e.sent_at + g.route.repeat_interval
        b = self.silences.next_change_after(t)
        if b is not None and b < wake:
            wake = b
        if not self.skip_quiet_flushes or wake <= t + interval or interval <= 0:
            return  # due at the next point anyway
        g.sleeping = True
        g.next_flush = float("inf") if wake == float("inf") else t + math.ceil((wake - t) / interval) * interval
        for d in g.deps:
            self._sleepers.setdefault(d, set()).add(g.key)

    def _wake(self, g: Group, after: float, *, inclusive: bool) -> None:
        """Back on its interval: the first point of its schedule not yet processed (after `after`,
        or at it when `inclusive`), as if it had never skipped a flush."""
        self._unsleep(g)
        interval = g.route.group_interval
        base = g.last_t
        k = max(1, math.floor((after - base) / interval) + 1) if after > base else 1
        nxt = base + k * interval
        if inclusive and nxt - interval > base and nxt - interval >= after:
            nxt -= interval
        if nxt < g.next_flush:
            g.next_flush = nxt
            if not g.in_flight:
                heapq.heappush(self._timers, (nxt, g.key))

    def _unsleep(self, g: Group) -> None:
        g.sleeping = False
        for d in g.deps:
            sl = self._sleepers.get(d)
            if sl is not None:
                sl.discard(g.key)
                if not sl:
                    del self._sleepers[d]

    def _wake_inhibited(self, after: float, *, inclusive: bool) -> None:
        """Wake the sleeping groups whose inhibition sources changed."""
        changed = self.inhibitor.take_changed()
        for d in changed:
            for gk in list(self._sleepers.get(d, ())):
                g = self.groups.get(gk)
                if g is not None and g.sleeping:
                    self._wake(g, after, inclusive=inclusive)

    def _unchanged(self, g: Group, t: float) -> bool:
        """True when this flush must decide as the last one did: nothing in the group changed, no
        silence changed or started or ended since, no inhibiting alert changed, no repeat is due."""
        if g.dirty or g.stamp != (self.silences.version, self.inhibitor.stamp(g.deps)):
            return False
        if self.silences.changes_between(g.last_t, t):
            return False
        e = self.nflog.entries.get(g.log_key())
        return e is None or not e.firing or t < e.sent_at + g.route.repeat_interval

    def _flush(self, g: Group, t: float) -> Notification | None:
        g.next_flush = t + g.route.group_interval
        if g.retired and not any(self.alerts[fp].ends_at is not None and self.alerts[fp].ends_at <= t for fp in g.fps):
            return None  # retired by a reload: no repeats, only the resolves of what it notified
        if self._unchanged(g, t):
            g.last_t = t
            self._sleep(g, t)
            return None
        alerts_by_fp, inhibitor, episodes = self.alerts, self.inhibitor, self.episodes
        deps: set[tuple[int, tuple[str, ...]]] = set()
        for fp in g.fps:
            deps.update(inhibitor.deps(alerts_by_fp[fp]))
        g.deps = deps
        g.dirty, g.stamp, g.last_t = False, (self.silences.version, inhibitor.stamp(deps)), t
        timeout = self.cfg.resolve_timeout
        silenced_for, held = self.silences.silenced_for, self.flapping.held
        firing: set[str] = set()
        resolved: set[str] = set()
        shown: list[Alert] = []
        for fp in sorted(g.fps) if len(g.fps) > 1 else g.fps:
            al = alerts_by_fp[fp]
            ends = al.ends_at
            if ends is None and al.episode not in episodes:
                if al.updated_at + timeout <= t:
                    ends = al.ends_at = al.updated_at + timeout  # a record without episode that went quiet
                    inhibitor.stopped(al)
                else:
                    g.dirty = True  # it may time out by the next flush
            if ends is None or ends > t:
                if ends is not None:
                    g.dirty = True  # resolved after this flush's time: the next flush sees it change
                reason = (
                    "silenced" if silenced_for(fp, al.labels, t) else
                    "inhibited" if inhibitor.inhibited_by(al) else
                    "flapping" if held(fp) else None
                )  # fmt: skip
                if reason is not None:
                    self.suppressed[reason] += 1
                    continue
                firing.add(fp)
            else:
                if held(fp):
                    self.suppressed["flapping"] += 1
                    continue
                resolved.add(fp)
            shown.append(al)
        key = g.log_key()
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
            if a.fp in ff:
                a.ends_at = None  # as of this flush (one catching up may already know of a later resolve)
            if a.fp in released:
                a.annotations["flapping"] = "was flapping and held back; stable again"
        g.in_flight = True
        return Notification(g.route.receiver, g.key, dict(g.labels), alerts, ff, rr & notified_before, t,
                            _content_hash(g.key, shown, ff), released, seq=prev.sent if prev else 0)

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
            if g.sleeping:
                self._wake(g, self._advanced, inclusive=False)
        if not done:
            return None
        for fp in n.released:
            self.flapping.released.discard(fp)
        prev = self.nflog.entries.get(n.log_key)
        entry = self.nflog.record(n.log_key, n.firing, n.resolved | (prev.resolved if prev else frozenset()),
                                  n.at, n.content_hash, seq=n.seq)
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
                k = log_key(g.key, g.route.receiver)
                if self.nflog.entries.pop(k, None) is not None:
                    self.dropped_log.append(k)
