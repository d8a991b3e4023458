"""Model test: the dispatcher against a small brute-force reference of the same rules.

The reference walks time in steps, keeps for each group only its alerts, its next flush time and the
last notification, and decides with the rules written out plainly (grouping timers, silences,
inhibition, the notification log's dedup and repeat interval, no resolve before its firing). Hypothesis
generates incidents, silences and timer settings; the two must send the same notifications.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from hypothesis import given, settings
from hypothesis import strategies as st
from logtide.sinks.alerts.config import AlertsConfig
from logtide.sinks.alerts.dispatch import Dispatcher
from logtide.sinks.alerts.silence import Silence, Silences

from tests.alerts.helpers import T0, anomaly

STEP = 10
T0S = T0.timestamp()


@dataclass
class Inc:
    service: str
    metric: str
    severity: str
    start: int
    end: int | None


@dataclass
class RefGroup:
    alerts: set[tuple[str, str, str]] = field(default_factory=set)
    next_flush: int = 0
    last: tuple[frozenset, frozenset, int] | None = None


def reference(incs: list[Inc], sils: list[tuple[str, int, int]], timers: tuple[int, int, int], horizon: int):
    w, i, r = timers
    by_key = {(x.service, x.metric, x.severity): x for x in incs}

    def firing(k, t):
        x = by_key[k]
        return x.start <= t and (x.end is None or t < x.end)

    def resolved(k, t):
        x = by_key[k]
        return x.end is not None and x.end <= t

    def muted(k, t):
        if any(s == k[0] and a <= t < b for s, a, b in sils):
            return True
        return k[2] == "warning" and any(
            kk[0] == k[0] and kk[2] == "critical" and firing(kk, t) for kk in by_key
        )  # critical inhibits warning of the same service

    groups: dict[str, RefGroup] = {}
    sent = []
    for t in range(0, horizon + 1, STEP):
        for k, x in by_key.items():
            if x.start == t:
                g = groups.get(k[0])
                if g is None:
                    g = groups[k[0]] = RefGroup(next_flush=t + w)
                g.alerts.add(k)
        for svc in sorted(groups):
            g = groups[svc]
            if g.next_flush != t:
                continue
            g.next_flush = t + i
            f = frozenset(k for k in g.alerts if firing(k, t) and not muted(k, t))
            res = frozenset(k for k in g.alerts if resolved(k, t))
            lf, lr, ls = g.last if g.last else (frozenset(), frozenset(), None)
            if g.last is None:
                send = bool(f)
            else:
                send = (not f <= lf) or (not f and bool(res & lf)) or (not (res & lf) <= lr) or (
                    bool(f) and t >= ls + r
                )
            if send:
                newly = res & lf
                sent.append((t, svc, f, newly))
                g.last = (f, lr | newly, t)
            lf, lr, _ = g.last if g.last else (frozenset(), frozenset(), None)
            g.alerts = {k for k in g.alerts if not (resolved(k, t) and (k not in lf or k in lr))}
            if not g.alerts:
                del groups[svc]
    return sent


def run_dispatcher(incs, sils, timers, horizon):
    w, i, r = timers
    cfg = AlertsConfig.model_validate({
        "route": {"receiver": "hook", "group_by": ["service"], "group_wait": w, "group_interval": i,
                  "repeat_interval": r},
        "receivers": [{"name": "hook"}],
        "inhibit_rules": [{"source_matchers": ['severity="critical"'], "target_matchers": ['severity="warning"'],
                           "equal": ["service"]}],
        "flapping": {"enabled": False},
    })
    silences = Silences()
    for n, (svc, a, b) in enumerate(sils):
        silences.put(Silence(f"s{n}", [f'service="{svc}"'], T0S + a, T0S + b, "me", "test", 0))
    d = Dispatcher(cfg, silences)
    sent = []
    for t in range(0, horizon + 1, STEP):
        for n, x in enumerate(incs):
            if x.start == t:
                d.ingest(anomaly(x.service, x.metric, at=t, episode=f"e{n}", severity=x.severity, start=t),
                         T0S + t)
            if x.end == t:
                d.ingest(anomaly(x.service, x.metric, at=t, episode=f"e{n}", severity=x.severity, start=x.start,
                                 resolved=True), T0S + t)
        for note in d.advance(T0S + t):
            key = lambda a: (a.labels["service"], a.labels["metric"], a.labels["severity"])  # noqa: E731
            byfp = {a.fp: key(a) for a in note.alerts}
            sent.append((round(note.at - T0S), note.group_labels["service"],
                         frozenset(byfp[f] for f in note.firing), frozenset(byfp[f] for f in note.resolved)))
            d.delivered(note, True, note.at)
    return sent


incident = st.builds(
    Inc,
    service=st.sampled_from(["api", "db"]),
    metric=st.sampled_from(["m1", "m2"]),
    severity=st.sampled_from(["warning", "critical"]),
    start=st.integers(0, 150).map(lambda x: x * STEP),
    end=st.none() | st.integers(1, 150).map(lambda x: x * STEP),
)


@settings(max_examples=150, deadline=None)
@given(
    incs=st.lists(incident, max_size=6, unique_by=lambda x: (x.service, x.metric, x.severity)),
    sils=st.lists(st.tuples(st.sampled_from(["api", "db"]), st.integers(0, 150).map(lambda x: x * STEP),
                            st.integers(1, 60).map(lambda x: x * STEP)), max_size=3),
    w=st.sampled_from([0, 30]),
    i=st.sampled_from([60, 300]),
    r=st.sampled_from([600, 3600]),
)
def test_dispatcher_matches_reference(incs, sils, w, i, r) -> None:
    for x in incs:
        if x.end is not None:
            x.end = x.start + x.end
    sils = [(s, a, a + d) for s, a, d in sils]
    horizon = 4000
    assert run_dispatcher(incs, sils, (w, i, r), horizon) == reference(incs, sils, (w, i, r), horizon)
