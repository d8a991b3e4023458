"""`logtide alerts` against the real local Kafka and a real loopback webhook receiver: firing and
resolve delivered; a restart mid-incident neither pages twice nor forgets the resolve; silences
added with the command are honoured; malformed records become dead letters."""

from __future__ import annotations

import asyncio
import time
from datetime import UTC, datetime, timedelta

import httpx
import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from click.testing import CliRunner
from logtide.schemas import Topics, encode

from logtide.alerts_command import AlertProcess
from logtide.cli import main
from logtide.config import parse_config
from tests.alerts.alertmanager import free_port
from tests.alerts.helpers import anomaly
from tests.alerts.receiver import Receiver

pytestmark = pytest.mark.integration
SECRET = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"


def config(bootstrap: str, prefix: str, url: str, metrics_port: int = 0):
    return parse_config({
        "kafka": {"bootstrap_servers": [bootstrap]},
        "topics": {"prefix": prefix, "partitions": 2},
        "alerts": {
            "route": {"receiver": "hook", "group_by": ["service"], "group_wait": "1s", "group_interval": "2s"},
            "receivers": [{"name": "hook", "webhook_configs": [{"url": url, "secrets": [SECRET]}]}],
            "metrics_port": metrics_port, "tick_seconds": 0.2,
        },
    })


def now_anomaly(service: str, episode: str, *, resolved: bool = False, ago: float = 0):
    a = anomaly(service, at=0, episode=episode, resolved=resolved, start=-60)
    ts = datetime.now(UTC) - timedelta(seconds=ago)
    return a.model_copy(update={"timestamp": ts, "episode": a.episode.model_copy(
        update={"start": ts - timedelta(seconds=60), "end": ts if resolved else None})})


async def produce(bootstrap: str, topic: str, values: list[bytes]) -> None:
    p = AIOKafkaProducer(bootstrap_servers=bootstrap)
    await p.start()
    try:
        for v in values:
            await p.send_and_wait(topic, v, key=b"k")
    finally:
        await p.stop()


async def wait_for(cond, timeout: float = 60) -> None:
    end = time.monotonic() + timeout
    while not cond():
        if time.monotonic() > end:
            raise AssertionError("condition not met in time")
        await asyncio.sleep(0.1)


async def start(cfg) -> tuple[AlertProcess, asyncio.Task]:
    p = AlertProcess(cfg)
    task = asyncio.create_task(p.run())
    live = asyncio.create_task(p.live.wait())
    await asyncio.wait([task, live], timeout=60, return_when=asyncio.FIRST_COMPLETED)
    if task.done():
        task.result()  # the process failed to start: raise its error
    assert p.live.is_set(), "the alert process did not go live"
    return p, task


async def test_restart_mid_incident_no_double_page_and_resolve_arrives(kafka_bootstrap: str, unique: str) -> None:
    rx = await Receiver(secret=SECRET).start()
    prefix = f"t{unique}."
    port = free_port()
    cfg = config(kafka_bootstrap, prefix, rx.url + "/hook", port)
    topics = Topics(prefix)
    try:
        p, task = await start(cfg)
        await produce(kafka_bootstrap, topics.anomalies, [encode(now_anomaly("checkout", "e1")), b"{not json"])
        await wait_for(lambda: len(rx.received) == 1)
        assert rx.received[0].json["status"] == "firing" and rx.received[0].signed_ok
        assert p.engine.metrics.dead_letters._value.get() == 1
        p.stop()
        await task  # the alert process goes away mid-incident
        p, task = await start(cfg)  # ... and comes back: replays the anomaly, reads the notification log
        await asyncio.sleep(3)  # more than group_wait + group_interval: a double page would be here by now
        assert len(rx.received) == 1
        await produce(kafka_bootstrap, topics.anomalies, [encode(now_anomaly("checkout", "e1", resolved=True))])
        await wait_for(lambda: len(rx.received) == 2)
        assert rx.received[1].json["status"] == "resolved"
        assert rx.received[1].json["groupKey"] == rx.received[0].json["groupKey"]
        metrics = (await asyncio.to_thread(httpx.get, f"http://127.0.0.1:{port}/metrics")).text
        assert 'logtide_alerts_attempts_total{integration="webhook",outcome="sent",receiver="hook"} 1.0' in metrics
        assert 'logtide_alerts_anomalies_total{status="resolved"} 1.0' in metrics
        p.stop()
        await task
        # every attempt is on the alerts topic
        c = AIOKafkaConsumer(topics.alerts, bootstrap_servers=kafka_bootstrap, auto_offset_reset="earliest")
        await c.start()
        got = await c.getmany(timeout_ms=5000)
        await c.stop()
        assert sum(len(v) for v in got.values()) >= 2
    finally:
        await rx.stop()


async def test_silence_from_the_command_is_honoured(kafka_bootstrap: str, unique: str, tmp_path) -> None:
    rx = await Receiver().start()
    prefix = f"t{unique}."
    cfg_file = tmp_path / "c.yaml"
    cfg_file.write_text(f"kafka: {{bootstrap_servers: ['{kafka_bootstrap}']}}\ntopics: {{prefix: '{prefix}'}}\n")
    cli = CliRunner()
    r = await asyncio.to_thread(cli.invoke, main, ["alerts", "silence", "add", "--config", str(cfg_file), "-m",
                                                   'service="search"', "--duration", "1h", "--author", "ops",
                                                   "--comment", "maintenance"])
    assert r.exit_code == 0, r.output
    sid = r.output.strip()
    listed = await asyncio.to_thread(cli.invoke, main, ["alerts", "silence", "list", "--config", str(cfg_file)])
    assert sid in listed.output and "active" in listed.output and "maintenance" in listed.output
    cfg = config(kafka_bootstrap, prefix, rx.url)
    try:
        p, task = await start(cfg)
        await produce(kafka_bootstrap, Topics(prefix).anomalies,
                      [encode(now_anomaly("search", "s1")), encode(now_anomaly("checkout", "c1"))])
        await wait_for(lambda: len(rx.received) == 1)
        await asyncio.sleep(2)
        assert [r.json["groupLabels"]["service"] for r in rx.received] == ["checkout"]
        assert p.engine.metrics.suppressed.labels("silenced")._value.get() >= 1
        p.stop()
        await task
    finally:
        await rx.stop()
    r = await asyncio.to_thread(cli.invoke, main, ["alerts", "silence", "expire", "--config", str(cfg_file), sid])
    assert r.exit_code == 0
    listed = await asyncio.to_thread(cli.invoke, main, ["alerts", "silence", "list", "--all", "--config",
                                                        str(cfg_file)])
    assert "expired" in listed.output


async def test_two_instances_one_pages_the_standby_takes_over(kafka_bootstrap: str, unique: str) -> None:
    rx = await Receiver(secret=SECRET).start()
    prefix = f"t{unique}."
    cfg = config(kafka_bootstrap, prefix, rx.url + "/hook")
    cfg.alerts.group_id = f"alerts-{unique}"
    cfg.alerts.leader_session_timeout = 6.0
    topics = Topics(prefix)
    try:
        a, task_a = await start(cfg)
        b = AlertProcess(cfg)
        task_b = asyncio.create_task(b.run())
        # b's joining rebalances the group: leadership may stay or move, but exactly one leads
        await asyncio.sleep(2)
        await wait_for(lambda: a.live.is_set() != b.live.is_set(), 60)
        await asyncio.sleep(2)
        assert a.live.is_set() != b.live.is_set(), "exactly one instance alerts"
        lead, standby = (a, b) if a.live.is_set() else (b, a)
        lead_task, standby_task = (task_a, task_b) if lead is a else (task_b, task_a)
        await produce(kafka_bootstrap, topics.anomalies, [encode(now_anomaly("checkout", "e1"))])
        await wait_for(lambda: len(rx.received) == 1)
        await asyncio.sleep(3)
        assert len(rx.received) == 1  # one page, not one per instance
        lead.stop()
        await lead_task
        await asyncio.wait_for(standby.live.wait(), 60)  # the standby takes over, reads the log back
        await asyncio.sleep(3)
        assert len(rx.received) == 1
        await produce(kafka_bootstrap, topics.anomalies, [encode(now_anomaly("checkout", "e1", resolved=True))])
        await wait_for(lambda: len(rx.received) == 2)
        assert rx.received[1].json["status"] == "resolved"
        standby.stop()
        await standby_task
    finally:
        await rx.stop()
