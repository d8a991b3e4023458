"""The pure alert core piece by piece: matchers, fingerprints, routing, inhibition, silences, flapping,
configuration errors with key paths, and no resolve before its firing."""

from __future__ import annotations

import pytest
from logtide.sinks.alerts.config import AlertsConfig, RouteConfig, parse_duration
from logtide.sinks.alerts.dispatch import Dispatcher
from logtide.sinks.alerts.flapping import Flapping
from logtide.sinks.alerts.model import Matcher, fingerprint
from logtide.sinks.alerts.routing import build_route
from logtide.sinks.alerts.silence import Silence, Silences

from logtide.config import ConfigError, parse_config
from tests.alerts.helpers import T0, anomaly

T = T0.timestamp()


def test_matchers_and_fingerprint() -> None:
    labels = {"service": "checkout", "severity": "critical"}
    assert Matcher.parse('service="checkout"').matches(labels)
    assert Matcher.parse("service!=search").matches(labels)
    assert Matcher.parse('service=~"check.*"').matches(labels)
    assert not Matcher.parse('service=~"check"').matches(labels)  # anchored
    assert Matcher.parse('env!~"prod|stage"').matches(labels)  # missing label is ""
    with pytest.raises(ValueError, match="bad regex"):
        Matcher.parse('service=~"("')
    assert fingerprint(labels) == fingerprint(dict(reversed(labels.items())))
    assert fingerprint(labels) != fingerprint({**labels, "severity": "warning"})


def test_routing_tree_inherits_and_continues() -> None:
    r = build_route(RouteConfig.model_validate({
        "receiver": "hook", "group_by": ["service"], "group_wait": "10s",
        "routes": [
            {"matchers": ['severity="critical"'], "receiver": "pager", "continue": True, "repeat_interval": "1h"},
            {"matchers": ['severity=~"warning|critical"'], "receiver": "chat", "group_by": ["..."]},
            {"matchers": ['severity="info"'], "receiver": "never"},
        ],
    }))
    crit = r.match({"severity": "critical", "service": "a"})
    assert [x.receiver for x in crit] == ["pager", "chat"]
    assert crit[0].group_wait == 10 and crit[0].repeat_interval == 3600 and crit[0].group_by == ("service",)
    assert crit[1].group_all and crit[1].group_labels({"a": "1", "b": "2"}) == {"a": "1", "b": "2"}
    assert [x.receiver for x in r.match({"severity": "warning"})] == ["chat"]
    assert [x.receiver for x in r.match({"severity": "none"})] == ["hook"]


def _cfg(**kw) -> AlertsConfig:
    base = {"route": {"receiver": "r", "group_by": ["service"], "group_wait": 0, "group_interval": 60},
            "receivers": [{"name": "r"}], "flapping": {"enabled": False}}
    base.update(kw)
    return AlertsConfig.model_validate(base)


def test_critical_inhibits_warning_of_the_same_service_only() -> None:
    d = Dispatcher(_cfg(inhibit_rules=[{"source_matchers": ['severity="critical"'],
                                        "target_matchers": ['severity="warning"'], "equal": ["service"]}]))
    d.ingest(anomaly(at=60, severity="critical", episode="c"), T + 60)
    d.ingest(anomaly(metric="lat", at=60, severity="warning", episode="w"), T + 60)
    d.ingest(anomaly("search", at=60, severity="warning", episode="s"), T + 60)
    notes = {n.group_labels["service"]: n for n in d.advance(T + 60)}
    assert [a.labels["severity"] for a in notes["checkout"].alerts] == ["critical"]
    assert len(notes["search"].alerts) == 1 and d.suppressed["inhibited"] == 1


def test_silences_mute_while_active_and_expire() -> None:
    s = Silences()
    sil = Silence.new(['service="checkout"', 'metric=~"log.*"'], starts_at=T, ends_at=T + 3600,
                      created_by="ops", comment="maintenance", now=T)
    s.put(sil)
    for i in range(1000):  # indexed: many unrelated silences
        s.put(Silence.new([f'service="svc{i}"'], starts_at=T, ends_at=T + 3600, created_by="x", comment="", now=T))
    assert s.silenced_by({"service": "checkout", "metric": "log.error_ratio"}, T + 10) == sil.id
    assert s.silenced_by({"service": "checkout", "metric": "http"}, T + 10) is None
    assert s.silenced_by({"service": "checkout", "metric": "log.x"}, T + 4000) is None
    s.expire(sil.id, T + 20)
    assert s.by_id[sil.id].state(T + 21) == "expired"
    assert s.silenced_by({"service": "checkout", "metric": "log.error_ratio"}, T + 21) is None
    # a replayed older version does not resurrect it
    s.put(Silence.from_plain(sil.to_plain()))
    assert s.by_id[sil.id].state(T + 21) == "expired"


def test_flapping_holds_and_releases() -> None:
    f = Flapping(window=20, changes=4)
    for state in [True, False, True, False, True]:
        f.evaluate("a", state)
    assert f.held("a")
    for _ in range(20):
        f.evaluate("a", True)
    assert not f.held("a") and "a" in f.released


def test_resolve_before_firing_is_ignored_and_late_firing_too() -> None:
    d = Dispatcher(_cfg())
    d.ingest(anomaly(at=120, resolved=True, episode="e"), T + 120)  # out of order: resolve first
    d.ingest(anomaly(at=60, episode="e"), T + 120)
    assert d.advance(T + 300) == [] and d.ignored["resolve_without_firing"] == 1


def test_config_errors_name_the_key_path() -> None:
    with pytest.raises(ConfigError) as e:
        parse_config({"alerts": {"route": {"receiver": "nope"}, "receivers": [{"name": "r"}]}})
    assert "route.receiver: unknown receiver 'nope'" in str(e.value)
    with pytest.raises(ConfigError) as e:
        parse_config({"alerts": {"route": {"receiver": "r", "routes": [{"matchers": ['a=~"("']}]},
                                 "receivers": [{"name": "r"}]}})
    assert "alerts.route.routes.0.matchers" in str(e.value) and "bad regex" in str(e.value)
    with pytest.raises(ConfigError) as e:
        parse_config({"alerts": {"receivers": [{"name": "default", "pagerduty_configs": [
            {"routing_key": "${PD_KEY}"}]}]}}, env={})
    assert "PD_KEY is not set" in str(e.value) and "pagerduty_configs[0].routing_key" in str(e.value)
    c = parse_config({"alerts": {"receivers": [{"name": "default", "slack_configs": [{"url": "${SLACK}"}]}]}},
                     env={"SLACK": "https://hooks.example/T0/B0/secret-part"})
    assert "secret-part" not in repr(c.alerts) and "secret-part" not in c.model_dump_json()
    assert parse_duration("1h30m") == 5400 and parse_duration("500ms") == 0.5


def test_flapping_alert_is_held_then_released_with_a_note() -> None:
    d = Dispatcher(_cfg(flapping={"window": 20, "changes": 4}))
    sent = []
    t = 0
    # fire/resolve 3 times in quick succession: the 4th change makes it flap
    for i in range(3):
        d.ingest(anomaly(at=t + 10, episode=f"e{i}"), T + t + 10)
        d.ingest(anomaly(at=t + 20, episode=f"e{i}", resolved=True), T + t + 20)
        t += 30
    d.ingest(anomaly(at=t + 10, episode="e9"), T + t + 10)
    for x in range(t, t + 400, 10):
        for n in d.advance(T + x):
            sent.append(n)
            d.delivered(n, True, n.at)
    assert d.flapping.held(next(iter(d.alerts)))
    assert sent == [] and d.suppressed["flapping"] > 0
    for k in range(20):  # stable: the same state evaluation after evaluation
        d.ingest(anomaly(at=t + 500 + k, episode="e9"), T + t + 500 + k)
    for x in range(t + 500, t + 900, 10):
        for n in d.advance(T + x):
            sent.append(n)
            d.delivered(n, True, n.at)
    assert [n.status for n in sent] == ["firing"]
    assert "flapping" in sent[0].alerts[0].annotations


def test_wide_routing_tree_index_matches_the_plain_walk() -> None:
    # 40 children, equality and regex matchers mixed, some with continue: indexing the children by
    # one equality matcher each must pick exactly the routes the child-by-child walk picks
    import itertools
    import random

    rnd = random.Random(7)
    children = []
    for i in range(40):
        ms = rnd.choice([[f'service="s{i % 7}"'], [f'service="s{i % 7}"', 'severity="critical"'],
                         [f'metric=~"m{i % 3}.*"'], ['severity!="info"', f'service="s{i % 5}"'], ['env=""'],
                         ['service=~"s1.*"'], ['service=~"s1|s2"'], ['service=~"s1+"'], ['metric=~"m1x?"'],
                         ['service=~"s[0-3]"'], ['service=~"(?i)S2"'], ['service=~"s\\d"'], ['service=~"s{2}"'],
                         ['service=~"s1"', 'severity=~"crit.*"']])
        children.append({"matchers": ms, "receiver": "r", "continue": rnd.random() < 0.4})
    r = build_route(RouteConfig.model_validate({"receiver": "r", "routes": children}))
    assert r._index is not None
    from logtide.sinks.alerts.routing import literal_prefix

    assert [literal_prefix(x) for x in ["svc1[0-9]*", "ab*", "ab+c", "a|b", "^ab", "(?i)ab", "ab\\.c", "abc"]] == \
        ["svc1", "a", "a", "", "", "", "ab", "abc"]
    for svc, sev, metric, env in itertools.product([f"s{i}" for i in range(8)] + ["s11", "S2", "ss", "", "s1s"],
                                                   ["info", "warning", "critical"], ["m0", "m1x", "m1", "m2", "zz"],
                                                   [None, "prod"]):
        labels = {"service": svc, "severity": sev, "metric": metric} | ({"env": env} if env else {})
        indexed = [x.id for x in r.match(labels)]
        r._index = None
        plain = [x.id for x in r.match(labels)]
        r.index_children()
        assert indexed == plain, labels


def test_flapping_counts_windows_not_records() -> None:
    # an incident that recurs once an hour (one flagged minute, resolved 3 windows later) changes
    # state twice an hour: with evaluations = 60-second windows, 20 evaluations hold no more than one
    # recurrence, so it is never flapping, however many records it made
    f = Flapping(window=20, changes=4)
    for hour in range(6):
        t = T + hour * 3600
        f.evaluate("a", True, t, 60)
        f.evaluate("a", False, t + 240, 60)
    assert not f.held("a")
    # the same records counted one evaluation each would have held it (the old behaviour)
    g = Flapping(window=20, changes=4)
    for _ in range(6):
        g.evaluate("b", True)
        g.evaluate("b", False)
    assert g.held("b")
    # a real flap (state changing every other window) is held; redelivered records do not count again
    h = Flapping(window=20, changes=4)
    for k in range(5):
        for _ in range(2):  # each record twice, as a redelivery would
            h.evaluate("c", k % 2 == 0, T + 60 * k, 60)
    assert h.held("c")
    i = Flapping(window=20, changes=4)
    for k in range(4):
        i.evaluate("d", k % 2 == 0, T + 60 * k, 60)
        i.evaluate("d", k % 2 == 0, T + 60 * k, 60)
    assert not i.held("d")  # 3 changes: the duplicates added none
