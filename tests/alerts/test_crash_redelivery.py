"""At-least-once, recognisably: the real `logtide alerts` process, the real local Kafka, a real loopback
receiver with a webhook and a PagerDuty endpoint. The receiver takes the notification and holds its
PagerDuty answer while the test kills the process with SIGKILL, so the process dies after the receiver
got the page and before it could log it (it logs a notification once every integration answered). The
restarted process pages again - with the same `webhook-id` and the same PagerDuty `dedup_key`, so a
receiver deduplicating on them (as Standard Webhooks and PagerDuty tell it to) sees one page - and the
resolve still arrives, under a new id."""

from __future__ import annotations

import asyncio
import signal
from pathlib import Path

import pytest
import yaml
from logtide.schemas import Topics, encode
from logtide.sinks.alerts.kafka_state import read_compacted

from logtide.config import parse_config
from logtide.kafka_client import connection_kwargs
from tests.alerts.receiver import Receiver
from tests.alerts.test_kafka_process import SECRET, now_anomaly, produce, wait_for
from tests.alerts.test_reload_process import Proc

pytestmark = pytest.mark.integration
PD = "/v2/enqueue"


async def test_kill9_between_delivery_and_log_write_repages_with_the_same_id(kafka_bootstrap: str, unique: str,
                                                                             tmp_path: Path) -> None:
    rx = await Receiver(secret=SECRET, hold=PD).start()
    prefix = f"t{unique}."
    raw = {
        "kafka": {"bootstrap_servers": [kafka_bootstrap]},
        "topics": {"prefix": prefix, "partitions": 2},
        "logging": {"level": "INFO"},
        "alerts": {
            "group_id": f"alerts-{unique}", "leader_session_timeout": "6s", "metrics_port": 0, "tick_seconds": 0.2,
            "route": {"receiver": "hook", "group_by": ["service"], "group_wait": "1s", "group_interval": "2s"},
            "receivers": [{"name": "hook", "webhook_configs": [{"url": rx.url + "/hook", "secrets": [SECRET]}],
                           "pagerduty_configs": [{"routing_key": "rk-crash", "url": rx.url + PD}]}],
            # the held answer must not time out: the process is to die waiting for it
            "delivery": {"timeout_seconds": 600, "rate_per_second": 100},
        },
    }
    conf = tmp_path / "alerts.yaml"
    conf.write_text(yaml.safe_dump(raw))
    topics = Topics(prefix)
    conn = connection_kwargs(parse_config(raw).kafka)
    hooks = lambda: [r for r in rx.received if r.path == "/hook"]  # noqa: E731
    pages = lambda: [r for r in rx.received if r.path == PD]  # noqa: E731
    first = Proc(conf, tmp_path / "first.log")
    second = None
    try:
        await first.wait("open alerts; live")
        await produce(kafka_bootstrap, topics.anomalies, [encode(now_anomaly("checkout", "e1"))])
        await asyncio.wait_for(rx.holding.wait(), 60)  # webhook answered 200, PagerDuty's answer held
        assert len(hooks()) == 1 and len(pages()) == 1
        first.p.send_signal(signal.SIGKILL)
        first.p.wait(10)
        rx.release.set()  # too late: nobody is waiting for it
        assert not [k for k, _ in await read_compacted(conn, topics.alerts_nflog, [0])], \
            "the notification was logged before the kill: this test would not test the crash window"

        second = Proc(conf, tmp_path / "second.log")  # joins the group once the dead one's session expires
        await second.wait("open alerts; live")
        await wait_for(lambda: len(hooks()) == 2 and len(pages()) == 2, 90)
        await asyncio.sleep(4)  # two more group intervals: a third page would be here by now
        assert len(hooks()) == 2 and len(pages()) == 2
        h1, h2 = hooks()
        assert h1.signed_ok and h2.signed_ok
        assert h1.json["status"] == h2.json["status"] == "firing"
        assert h1.headers["webhook-id"] == h2.headers["webhook-id"]  # the same notification, recognisably
        assert h1.headers["webhook-timestamp"] <= h2.headers["webhook-timestamp"]
        p1, p2 = (p.json for p in pages())
        assert p1["event_action"] == p2["event_action"] == "trigger" and p1["dedup_key"] == p2["dedup_key"]
        # ... this time it was logged
        logged = await read_compacted(conn, topics.alerts_nflog, [0])
        assert [k for k, v in logged if v is not None] == [f"{h1.json['groupKey']}/hook"]

        await produce(kafka_bootstrap, topics.anomalies, [encode(now_anomaly("checkout", "e1", resolved=True))])
        await wait_for(lambda: len(hooks()) == 3 and len(pages()) == 3, 60)
        h3, p3 = hooks()[2], pages()[2].json
        assert h3.signed_ok and h3.json["status"] == "resolved" and h3.json["groupKey"] == h1.json["groupKey"]
        assert p3["event_action"] == "resolve" and p3["dedup_key"] == p1["dedup_key"]

        # a receiver that deduplicates on webhook-id: one page, one resolve
        seen: dict[str, str] = {}
        for h in hooks():
            seen.setdefault(h.headers["webhook-id"], h.json["status"])
        assert sorted(seen.values()) == ["firing", "resolved"]
        print(f"webhook-ids: {[h.headers['webhook-id'] for h in hooks()]}; "
              f"PagerDuty: {[(p.json['event_action'], p.json['dedup_key'][:8]) for p in pages()]}")
    finally:
        first.stop()
        if second is not None:
            second.stop()
        await rx.stop()
