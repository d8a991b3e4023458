"""A reloaded `alerts` section applied to a running dispatcher, pure: nobody is paged twice, no resolve
is lost.

Live: the routing tree, receivers, inhibition rules, grouping timers, the static silences, the
resolve timeout, the external URL, delivery settings (and the loop's tick). Restart: what changes
the alerts' identity or the process's place (`static_labels` change every fingerprint; `group_id`,
`metrics_port`, `leader_session_timeout`, `replay_lookback`, `enabled`, flapping's history shape).

Groups follow their route by what the route *is*, not where it sits: its matchers from the root, its
receiver and its grouping. A route that is still there (even moved among its siblings, or with new timers)
keeps its groups, their timers and their notification log entries (route ids name the matcher path,
see `routing`, so nothing is renamed): nothing is sent again. A group whose route is gone or now
sends elsewhere or groups otherwise is retired: it takes no new alerts and sends nothing more except
the resolves of what it notified, to its receiver, then goes. It keeps its key (receivers such as
PagerDuty match the resolve to the incident by it) unless the same route now builds groups under
that key (only its receiver or grouping changed): then it is renamed `...#retired`. Every alert still firing is routed through the new
tree; a group it was not in yet notifies it as any new group would.
"""

from __future__ import annotations

import hashlib
import heapq
import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime

from logtide.sinks.alerts.config import AlertsConfig, StaticSilenceConfig
from logtide.sinks.alerts.dispatch import Dispatcher, Group, group_key
from logtide.sinks.alerts.inhibit import Inhibitor, Rule
from logtide.sinks.alerts.nflog import NotificationLog, log_key
from logtide.sinks.alerts.routing import Route, build_route
from logtide.sinks.alerts.silence import Silence, Silences

#: Key paths of the whole configuration the alert process applies while running (or under which).
LIVE_KEYS = (
    "logging.level",
    "alerts.route",
    "alerts.receivers",
    "alerts.inhibit_rules",
    "alerts.silences",
    "alerts.resolve_timeout",
    "alerts.external_url",
    "alerts.delivery",
    "alerts.tick_seconds",
)

#: The top-level sections the alert process reads.
SECTIONS = ("kafka", "topics", "logging", "alerts")

RETIRED = "#retired"
STATIC_SILENCE_PREFIX = "config-"
_FOREVER = 253402300799.0  # 9999-12-31T23:59:59Z


@dataclass
class Reconfigured:
    """What a reload did to the groups."""

    kept: int = 0
    retired: int = 0
    new_groups: int = 0
    silences_added: int = 0  # the file's silences
    silences_ended: int = 0
    renamed: dict[str, str] = field(default_factory=dict)  # group key before -> after
    moved_log: dict[str, str] = field(default_factory=dict)  # notification log key before -> after


Signature = tuple[object, ...]


def _signatures(root: Route) -> Iterator[tuple[Signature, Route]]:
    """(what a route is: its id — the matcher path —, receiver and grouping; the route) over the tree."""
    yield (root.id, root.receiver, root.group_by, root.group_all), root
    for c in root.routes:
        yield from _signatures(c)


def reconfigure(d: Dispatcher, cfg: AlertsConfig, send_resolved: dict[str, bool]) -> Reconfigured:
    """Apply a new `alerts` section (its restart-only keys already set back to the running values)."""
    out = Reconfigured()
    old_sig = {id(r): s for s, r in _signatures(d.route)}
    root = build_route(cfg.route)
    new_by_sig = dict(_signatures(root))
    new_ids = {s[0] for s in new_by_sig}
    groups: dict[str, Group] = {}
    retired: list[Group] = []
    for gk, g in d.groups.items():
        sig = None if g.retired else old_sig.get(id(g.route))
        r2 = new_by_sig.get(sig) if sig is not None else None
        if r2 is None:
            retired.append(g)
            continue
        g.route, g.dirty = r2, True  # same id and labels: same key, same log entry; new timers
        groups[gk] = g
        out.kept += 1
    for g in retired:
        ngk = g.key
        if g.route.id in new_ids and RETIRED not in g.key:
            # the route is there with another receiver or grouping: its new groups may need this key
            ngk, i = f"{g.key}{RETIRED}", 1
            while ngk in d.groups or ngk in groups:
                i += 1
                ngk = f"{g.key}{RETIRED}{i}"
            out.renamed[g.key] = ngk
            old_log, new_log = log_key(g.key, g.route.receiver), log_key(ngk, g.route.receiver)
            e = d.nflog.entries.pop(old_log, None)
            if e is not None:
                d.nflog.entries[new_log] = e
                out.moved_log[old_log] = new_log
        g.key, g.retired, g.dirty = ngk, True, True
        groups[ngk] = g
        out.retired += 1
    d.cfg, d.route, d.send_resolved = cfg, root, send_resolved
    d.routing_changed()
    # every alert still firing goes where the new tree sends it
    for fp, al in d.alerts.items():
        if al.resolved():
            continue
        for r in root.match(al.labels):
            gl = r.group_labels(al.labels)
            gk = group_key(r, gl)
            g = groups.get(gk)
            if g is None:
                g = groups[gk] = Group(r, gk, gl, next_flush=d.now + r.group_wait)
                out.new_groups += 1
            if fp not in g.fps:
                g.fps.add(fp)
                g.dirty = True
    d.groups = groups
    d.alert_groups = {}
    for g in groups.values():
        for fp in g.fps:
            d.alert_groups.setdefault(fp, set()).add(g.key)
    d._timers = [(g.next_flush, g.key) for g in groups.values()]
    heapq.heapify(d._timers)
    inh = Inhibitor([Rule.from_config(r) for r in cfg.inhibit_rules])
    for al in d.alerts.values():
        if not al.resolved():
            inh.firing(al)
    d.inhibitor = inh
    return out


def _ts(dt: datetime | None, default: float) -> float:
    if dt is None:
        return default
    return (dt if dt.tzinfo is not None else dt.replace(tzinfo=UTC)).timestamp()


def static_silence(c: StaticSilenceConfig, now: float) -> Silence:
    """The silence a configuration entry stands for; its id is its content, so an edit is a new silence."""
    starts, ends = _ts(c.starts_at, 0.0), _ts(c.ends_at, _FOREVER)
    h = hashlib.sha256(repr((sorted(c.matchers), starts, ends, c.created_by, c.comment)).encode()).hexdigest()
    return Silence(STATIC_SILENCE_PREFIX + h[:16], list(c.matchers), starts, ends, c.created_by, c.comment, now)


def sync_static_silences(silences: Silences, wanted: list[StaticSilenceConfig], now: float) -> tuple[int, int]:
    """Make the file's silences the ones in force: new ones added, those gone from the file expired
    (kept listed, as any expired silence). Returns (added, expired)."""
    want = {s.id: s for s in (static_silence(c, now) for c in wanted)}
    added = expired = 0
    for sid, s in want.items():
        if sid not in silences.by_id or silences.by_id[sid].ends_at <= now < s.ends_at:
            silences.put(s)
            added += 1
    for sid, s in list(silences.by_id.items()):
        if sid.startswith(STATIC_SILENCE_PREFIX) and sid not in want and s.ends_at > now:
            silences.expire(sid, now)
            expired += 1
    return added, expired


_LEGACY_ID = re.compile(r"^0((?:\.\d+)+):\{")


def migrate_legacy_keys(nflog: NotificationLog, root: Route) -> dict[str, str]:
    """Notification log entries written when route ids were positions (`0.1.2:{...}`) renamed to the
    route ids of today (`0/{matchers}...`), so the first start after the upgrade pages nobody again.
    Returns {old key: new key} (to be written back)."""
    moved: dict[str, str] = {}
    for key in list(nflog.entries):
        m = _LEGACY_ID.match(key)
        if m is None:
            continue
        r: Route | None = root
        for i in (int(x) for x in m.group(1)[1:].split(".")):
            r = r.routes[i] if r is not None and i < len(r.routes) else None
        if r is None:
            continue
        new = r.id + key[m.end(1):]
        if new not in nflog.entries:
            nflog.entries[new] = nflog.entries.pop(key)
            moved[key] = new
    return moved
