"""Sharding the alert work: the shard of a record is the shard of its alert's labels; a sharded
configuration must group and inhibit within shards; and, against the real local Kafka, two
`logtide alerts` processes share the shards, page each incident exactly once, and when one is killed
with SIGKILL mid-incident the other takes its shards over without paging again, and still delivers
the resolves."""

from __future__ import annotations

import asyncio
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml
from hypothesis import given, settings
from hypothesis import strategies as st
from logtide.schemas import Topics, encode
from logtide.sinks.alerts.config import AlertsConfig
from logtide.sinks.alerts.facts import facts_from_model
from logtide.sinks.alerts.model import alert_labels
from logtide.sinks.alerts.shard import Sharding

from logtide.config import ConfigError, parse_config
from tests.alerts.helpers import anomaly
from tests.alerts.receiver import Receiver
from tests.alerts.test_kafka_process import SECRET, now_anomaly, produce, wait_for

label = st.text(st.characters(min_codepoint=48, max_codepoint=122), min_size=0, max_size=6)


@settings(max_examples=200, deadline=None)
@given(alert=st.tuples(label, st.sampled_from(["m", "service", "x.y"]), st.sampled_from(["warning", "critical"])),
       shards=st.integers(1, 7), by=st.sampled_from([["service"], ["service", "metric"], ["severity", "env"]]),
       static=st.dictionaries(st.sampled_from(["env", "service"]), label, max_size=2))
def test_record_shard_is_its_alerts_label_shard(alert, shards, by, static) -> None:
    svc, metric, sev = alert
    f = facts_from_model(anomaly(svc, metric, severity=sev))
    s = Sharding(shards, tuple(by), tuple(sorted(static.items())))
    assert 0 <= s.of_facts(f) < shards
    assert s.of_facts(f) == s.of_labels(alert_labels(f, static))
    raw = encode(anomaly(svc, metric, severity=sev))
    assert s.probe(raw) == s.of_facts(f)  # the cheap look at the bytes agrees
    assert s.probe(b"{not json") is None or shards == 1


def test_sharded_config_must_group_and_inhibit_within_shards() -> None:
    with pytest.raises(ConfigError, match=r"alerts.route.routes\[0\].group_by: .*missing \['service'\]"):
        parse_config({"alerts": {"shards": 2, "receivers": [{"name": "r"}],
                                 "route": {"receiver": "r", "group_by": ["service"],
                                           "routes": [{"matchers": ["a=b"], "group_by": ["metric"]}]}}})
    with pytest.raises(ConfigError, match=r"alerts.inhibit_rules\[0\].equal"):
        parse_config({"alerts": {"shards": 2, "inhibit_rules": [
            {"source_matchers": ["a=b"], "target_matchers": ["a=c"], "equal": ["metric"]}]}})
    ok = AlertsConfig.model_validate({"shards": 4, "route": {"receiver": "default", "group_by": ["..."]}})
    assert ok.shards == 4  # grouping by all labels groups by the shard labels too


OWNING = re.compile(r"owning shards ([0-9,]+) of (\d+)")


def owned_now(log: Path) -> frozenset[int] | None:
    """The shards a process alerts for, from its log (None while it has none or is rebuilding)."""
    text = log.read_text(errors="replace")
    last = None
    for line in text.splitlines():
        m = OWNING.search(line)
        if m:
            last = frozenset(int(x) for x in m.group(1).split(","))
        elif "shard assignment changed" in line:
            last = None
    return last


@pytest.mark.integration
async def test_two_instances_share_shards_and_survive_a_kill9(kafka_bootstrap: str, unique: str,
                                                             tmp_path: Path) -> None:
    rx = await Receiver(secret=SECRET).start()
    prefix = f"t{unique}."
    raw = {
        "kafka": {"bootstrap_servers": [kafka_bootstrap]},
        "topics": {"prefix": prefix, "partitions": 2},
        "logging": {"level": "INFO"},
        "alerts": {
            "group_id": f"alerts-{unique}", "shards": 2, "leader_session_timeout": "6s",
            "route": {"receiver": "hook", "group_by": ["service"], "group_wait": "1s", "group_interval": "2s"},
            "receivers": [{"name": "hook", "webhook_configs": [{"url": rx.url + "/hook", "secrets": [SECRET]}]}],
            "metrics_port": 0, "tick_seconds": 0.2,
        },
    }
    cfg_path = tmp_path / "alerts.yaml"
    cfg_path.write_text(yaml.safe_dump(raw))
    sharding = Sharding.from_config(parse_config(raw).alerts)
    names = [f"svc{i}" for i in range(20)]
    by_shard = {s: next(n for n in names if sharding.of_labels({"service": n}) == s) for s in (0, 1)}
    topics = Topics(prefix)
    logs = [tmp_path / "a.log", tmp_path / "b.log"]
    procs: list[subprocess.Popen] = []
    try:
        for log in logs:
            with log.open("wb") as out:
                procs.append(subprocess.Popen([sys.executable, "-m", "logtide.cli", "alerts", "--config",
                                               str(cfg_path)], stdout=out, stderr=out,
                                              env={**os.environ, "PYTHONUNBUFFERED": "1"}))
            await asyncio.sleep(2)  # the second joins once the first owns both shards: a real rebalance

        def shared() -> bool:
            a, b = owned_now(logs[0]), owned_now(logs[1])
            assert all(p.poll() is None for p in procs), [log.read_text()[-2000:] for log in logs]
            return a is not None and b is not None and a.isdisjoint(b) and a | b == {0, 1}

        await wait_for(shared, 90)
        await asyncio.sleep(3)  # both rebuilt and live after the rebalance
        assert shared(), "the shards stayed shared"
        await produce(kafka_bootstrap, topics.anomalies,
                      [encode(now_anomaly(svc, f"e-{svc}")) for svc in by_shard.values()])
        await wait_for(lambda: len(rx.received) == 2, 60)
        await asyncio.sleep(4)  # two more group intervals: a double page would be here by now
        firing = sorted(r.json["groupLabels"]["service"] for r in rx.received)
        assert firing == sorted(by_shard.values()), "each incident paged exactly once"
        assert all(r.signed_ok and r.json["status"] == "firing" for r in rx.received)

        # kill -9 the owner of shard 0 mid-incident; its incident resolves while nobody owns the shard
        victim = 0 if 0 in owned_now(logs[0]) else 1
        survivor = 1 - victim
        os.kill(procs[victim].pid, signal.SIGKILL)
        procs[victim].wait(10)
        await produce(kafka_bootstrap, topics.anomalies, [encode(now_anomaly(by_shard[0], f"e-{by_shard[0]}",
                                                                             resolved=True))])
        t0 = time.monotonic()
        await wait_for(lambda: owned_now(logs[survivor]) == {0, 1}, 90)  # the survivor takes shard 0 over
        took = time.monotonic() - t0
        await wait_for(lambda: len(rx.received) == 3, 60)
        await asyncio.sleep(4)
        assert len(rx.received) == 3, [r.json["status"] for r in rx.received]
        third = rx.received[2].json
        assert third["status"] == "resolved" and third["groupLabels"]["service"] == by_shard[0]
        first0 = next(r.json for r in rx.received[:2] if r.json["groupLabels"]["service"] == by_shard[0])
        assert third["groupKey"] == first0["groupKey"]

        # the survivor's own incident: not paged again by the rebuild, and its resolve arrives once
        await produce(kafka_bootstrap, topics.anomalies, [encode(now_anomaly(by_shard[1], f"e-{by_shard[1]}",
                                                                             resolved=True))])
        await wait_for(lambda: len(rx.received) == 4, 60)
        await asyncio.sleep(4)
        assert len(rx.received) == 4
        assert rx.received[3].json["status"] == "resolved"
        assert rx.received[3].json["groupLabels"]["service"] == by_shard[1]
        print(f"shards taken over {took:.1f}s after the kill -9; notifications: "
              f"{[(r.json['status'], r.json['groupLabels']['service']) for r in rx.received]}")
    finally:
        for p in procs:
            if p.poll() is None:
                p.send_signal(signal.SIGTERM)
        for p in procs:
            try:
                p.wait(30)
            except subprocess.TimeoutExpired:
                p.kill()
        await rx.stop()


@settings(max_examples=80, deadline=None)
@given(incs=st.lists(st.tuples(st.sampled_from(["api", "db", "web", "pay", "auth"]), st.sampled_from(["m1", "m2"]),
                               st.sampled_from(["warning", "critical"]), st.integers(0, 60), st.integers(1, 60)),
                     max_size=12),
       shards=st.integers(2, 4), silenced=st.sampled_from([None, "api", "db"]))
def test_shards_decide_together_what_one_instance_decides(incs, shards, silenced) -> None:
    # the records split by shard over several dispatchers send, all together, exactly what one
    # dispatcher holding every record sends (groups, inhibition, silences stay within a shard)
    from logtide.sinks.alerts.dispatch import Dispatcher
    from logtide.sinks.alerts.silence import Silence, Silences

    from tests.alerts.helpers import T0

    t0 = T0.timestamp()
    cfg = AlertsConfig.model_validate({
        "shards": shards,
        "route": {"receiver": "hook", "group_by": ["service"], "group_wait": 30, "group_interval": 60,
                  "routes": [{"matchers": ['severity="critical"'], "receiver": "pager", "continue": True,
                              "group_by": ["service", "metric"]}]},
        "receivers": [{"name": "hook"}, {"name": "pager"}],
        "inhibit_rules": [{"source_matchers": ['severity="critical"'], "target_matchers": ['severity="warning"'],
                           "equal": ["service"]}],
    })
    sharding = Sharding.from_config(cfg)
    events = []
    for n, (svc, metric, sev, start, dur) in enumerate(incs):
        events.append((start * 10, anomaly(svc, metric, at=start * 10, severity=sev, episode=f"e{n}",
                                           start=start * 10)))
        events.append(((start + dur) * 10, anomaly(svc, metric, at=(start + dur) * 10, severity=sev,
                                                   episode=f"e{n}", start=start * 10, resolved=True)))
    events.sort(key=lambda e: (e[0], e[1].status != "firing"))

    def run(keep) -> list[tuple]:
        sil = Silences()
        if silenced:
            sil.put(Silence("s", [f'service="{silenced}"'], t0 + 100, t0 + 400, "me", "", t0))
        d = Dispatcher(cfg, sil)
        out, i = [], 0
        for t in range(0, 1500, 5):
            while i < len(events) and events[i][0] <= t:
                if keep(events[i][1]):
                    d.ingest(events[i][1], t0 + t)
                i += 1
            for note in d.advance(t0 + t):
                out.append((round(note.at - t0), note.receiver, note.group_key, sorted(note.firing),
                            sorted(note.resolved)))
                d.delivered(note, True, t0 + t)
        return out

    whole = sorted(run(lambda a: True))
    split = sorted(x for s in range(shards) for x in run(lambda a, s=s: sharding.of_facts(facts_from_model(a)) == s))
    assert split == whole
