"""Skipping quiet flushes changes nothing: a dispatcher whose quiet groups sleep until a repeat, a
silence bound or an event must send exactly what one that flushes every group at every interval
sends. Hypothesis drives both with incidents (with and without episodes), silences added while
running, critical alerts inhibiting warnings, flapping alerts held and released, short repeat intervals and failed deliveries."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st
from logtide.sinks.alerts.config import AlertsConfig
from logtide.sinks.alerts.dispatch import Dispatcher
from logtide.sinks.alerts.silence import Silence, Silences

from tests.alerts.helpers import T0, anomaly

T = T0.timestamp()

event = st.one_of(
    st.tuples(st.just("fire"), st.sampled_from(["api", "db", "web"]), st.sampled_from(["m1", "m2"]),
              st.sampled_from(["warning", "critical"]), st.integers(0, 3), st.booleans()),
    st.tuples(st.just("resolve"), st.integers(0, 3)),
    st.tuples(st.just("silence"), st.sampled_from(["api", "db", "web"]), st.integers(0, 400),
              st.integers(10, 900)),
    st.tuples(st.just("advance"), st.integers(1, 400)),
)


def run(events: list[tuple], timers: tuple[int, int, int], fail_every: int, skip: bool) -> list[tuple]:
    w, i, r = timers
    cfg = AlertsConfig.model_validate({
        "route": {"receiver": "hook", "group_by": ["service"], "group_wait": w, "group_interval": i,
                  "repeat_interval": r,
                  "routes": [{"matchers": ['severity="critical"'], "receiver": "pager", "continue": True,
                              "group_by": ["service", "metric"]}]},
        "receivers": [{"name": "hook"}, {"name": "pager"}],
        "inhibit_rules": [{"source_matchers": ['severity="critical"'], "target_matchers": ['severity="warning"'],
                           "equal": ["service"]}],
        "flapping": {"window": 6, "changes": 2}, "resolve_timeout": 700,
    })
    sil = Silences()
    d = Dispatcher(cfg, sil, skip_quiet_flushes=skip)
    t, sent, n_notes = 0, [], 0
    episodes: dict[int, tuple] = {}
    for e in events:
        if e[0] == "fire":
            _, svc, metric, sev, ep, has_ep = e
            episodes.setdefault(ep, (svc, metric, sev, t, has_ep))
            svc, metric, sev, start, has_ep = episodes[ep]
            d.ingest(anomaly(svc, metric, at=t, severity=sev, episode=f"e{ep}" if has_ep else None,
                             start=start), T + t)
        elif e[0] == "resolve" and e[1] in episodes:
            svc, metric, sev, start, has_ep = episodes.pop(e[1])
            if has_ep:
                d.ingest(anomaly(svc, metric, at=t, severity=sev, episode=f"e{e[1]}", start=start, resolved=True),
                         T + t)
        elif e[0] == "silence":
            _, svc, a, dur = e
            sil.put(Silence(f"s{len(sil.by_id)}", [f'service="{svc}"'], T + t + a, T + t + a + dur, "me", "", T + t))
        elif e[0] == "advance":
            for _ in range(e[1]):  # the clock moves second by second; each second's due flushes go out
                t += 1
                for n in d.advance(T + t):
                    n_notes += 1
                    ok = fail_every == 0 or n_notes % fail_every != 0
                    sent.append((round(n.at - T), n.receiver, n.group_key, sorted(a.labels["metric"] + a.labels[
                        "severity"] for a in n.alerts if a.fp in n.firing), len(n.resolved), ok))
                    d.delivered(n, ok, T + t)
    for _ in range(3000):  # let every timer run out
        t += 1
        for n in d.advance(T + t):
            sent.append((round(n.at - T), n.receiver, n.group_key, sorted(a.labels["metric"] + a.labels["severity"]
                                                                          for a in n.alerts if a.fp in n.firing),
                         len(n.resolved), True))
            d.delivered(n, True, T + t)
    return sent


@settings(max_examples=120, deadline=None)
@given(events=st.lists(event, max_size=25), w=st.sampled_from([0, 10]), i=st.sampled_from([30, 60]),
       r=st.sampled_from([90, 200, 3600]), fail_every=st.sampled_from([0, 3]))
def test_sleeping_groups_send_what_flushing_every_interval_sends(events, w, i, r, fail_every) -> None:
    assert run(events, (w, i, r), fail_every, True) == run(events, (w, i, r), fail_every, False)


def test_a_sleeping_group_wakes_when_its_silence_ends() -> None:
    # the alert fires under a silence: nothing is sent, the group sleeps; the silence's end is the
    # next moment its decision can change, so the flush at the first interval point after it pages
    for skip in (True, False):
        events = [("silence", "api", 0, 1000), ("fire", "api", "m1", "warning", 0, True), ("advance", 1500)]
        sent = run(events, (0, 60, 3600), 0, skip)
        assert [(at, rcv, firing) for at, rcv, _, firing, _, _ in sent] == [(1020, "hook", ["m1warning"])]


def test_routing_changed_wakes_sleeping_groups_and_forgets_cached_routes() -> None:
    cfg = AlertsConfig.model_validate({"route": {"receiver": "hook", "group_by": ["service"], "group_wait": 0,
                                                 "group_interval": 60}, "receivers": [{"name": "hook"}]})
    d = Dispatcher(cfg)
    d.ingest(anomaly("api", at=0), T)
    for t in range(0, 200, 10):
        for n in d.advance(T + t):
            d.delivered(n, True, T + t)
    g = next(iter(d.groups.values()))
    assert g.sleeping and g.next_flush > T + 3600  # paged; quiet until the repeat interval
    d.routing_changed()
    assert not g.sleeping and g.next_flush == T + 240  # back on its 60-second schedule
    assert d._resolve.cache_info().currsize == 0
