"""Delivery against real HTTP receivers on loopback: signatures, retries, 429, dead letters, breaker,
and the notification log deciding that a resolve still arrives after a receiver was down."""

from __future__ import annotations

import asyncio

import pytest
from logtide.schemas import AlertNotification
from logtide.sinks.alerts.config import AlertsConfig
from logtide.sinks.alerts.delivery import CircuitBreaker, TokenBucket
from logtide.sinks.alerts.engine import AlertEngine

from tests.alerts.helpers import T0, anomaly
from tests.alerts.receiver import Receiver

SECRET = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
T = T0.timestamp()


def cfg(url: str, kind: str = "webhook", **delivery) -> AlertsConfig:
    integ = {
        "webhook": {"webhook_configs": [{"url": url + "/hook", "secrets": [SECRET]}]},
        "slack": {"slack_configs": [{"url": url + "/slack"}]},
        "pagerduty": {"pagerduty_configs": [{"routing_key": "rk-123", "url": url + "/v2/enqueue"}]},
    }[kind]
    return AlertsConfig.model_validate({
        "route": {"receiver": "r", "group_by": ["service"], "group_wait": "30s", "group_interval": "5m"},
        "receivers": [{"name": "r", **integ}],
        "delivery": {"backoff_initial_seconds": 0.01, "backoff_max_seconds": 0.05, "max_attempts": 4,
                     "rate_per_second": 100, "timeout_seconds": 1, **delivery},
    })


async def incident(engine: AlertEngine, down_until: int = 0) -> None:
    """checkout fires at +60 s (two metrics), resolves at +600 s; time is event time."""
    engine.ingest(anomaly(at=60), T + 60)
    engine.ingest(anomaly(metric="http.request.duration_ms", at=60, episode="ep2"), T + 60)
    engine.ingest(anomaly("search", at=60, episode="ep3", severity="warning"), T + 60)
    engine.tick(T + 100)
    await engine.drain()
    engine.ingest(anomaly(at=600, resolved=True, start=0), T + 600)
    engine.ingest(anomaly(metric="http.request.duration_ms", at=600, episode="ep2", resolved=True, start=0), T + 600)
    for t in range(600, 2000, 60):
        engine.tick(T + t)
        await engine.drain()


async def run(c: AlertsConfig, **kw) -> tuple[AlertEngine, list[AlertNotification]]:
    records: list[AlertNotification] = []
    e = AlertEngine(c, record=records.append, clock=None, **kw)
    await e.start()
    return e, records


async def test_webhook_firing_then_resolved_signed_v4() -> None:
    rx = await Receiver(secret=SECRET).start()
    e, records = await run(cfg(rx.url))
    try:
        await incident(e)
    finally:
        await e.close()
        await rx.stop()
    bodies = [r.json for r in rx.received]
    checkout = [b for b in bodies if b["groupLabels"] == {"service": "checkout"}]
    assert [b["status"] for b in checkout] == ["firing", "resolved"]
    assert all(r.signed_ok for r in rx.received)
    first = checkout[0]
    assert first["version"] == "4" and first["receiver"] == "r" and first["truncatedAlerts"] == 0
    assert {a["labels"]["metric"] for a in first["alerts"]} == {"log.error_ratio", "http.request.duration_ms"}
    assert first["commonLabels"]["service"] == "checkout" and "value" in first["alerts"][0]["annotations"]
    assert checkout[1]["groupKey"] == first["groupKey"]
    assert all(a["endsAt"] != "0001-01-01T00:00:00Z" for a in checkout[1]["alerts"])
    assert [r.delivery.outcome for r in records].count("sent") == len(rx.received)


async def test_5xx_and_429_are_retried_with_the_same_webhook_id() -> None:
    rx = await Receiver(secret=SECRET, script=[(500, {}, "boom"), (429, {"Retry-After": "0"}, "slow down")]).start()
    e, records = await run(cfg(rx.url))
    try:
        await incident(e)
    finally:
        await e.close()
        await rx.stop()
    assert rx.attempts >= 3
    outcomes = [(r.delivery.attempt, r.delivery.outcome) for r in records]
    assert outcomes[:3] == [(1, "retrying"), (2, "retrying"), (3, "sent")]
    ids = {r.annotations["webhook_id"] for r in records[:3]}
    assert len(ids) == 1


async def test_400_is_a_dead_letter_without_retry() -> None:
    rx = await Receiver(script=[(400, {}, "invalid_payload")]).start()
    e, records = await run(cfg(rx.url, "slack"))
    try:
        e.ingest(anomaly(at=60), T + 60)
        e.tick(T + 100)
        await e.drain()
    finally:
        await e.close()
        await rx.stop()
    assert rx.attempts == 1
    assert records[-1].delivery.outcome == "dead_letter" and "invalid_payload" in records[-1].delivery.reason
    assert e.metrics.attempts.labels("r", "slack", "dead_letter")._value.get() == 1


async def test_receiver_down_then_back_still_gets_firing_and_resolve() -> None:
    # every attempt of the first two notifications fails (connection refused-like 503s)
    rx = await Receiver(secret=SECRET, script=[(503, {}, "down")] * 8).start()
    e, records = await run(cfg(rx.url, max_attempts=4, breaker_failures=100))
    try:
        await incident(e)
    finally:
        await e.close()
        await rx.stop()
    checkout = [r.json for r in rx.received if r.json["groupLabels"] == {"service": "checkout"}]
    assert [b["status"] for b in checkout] == ["firing", "resolved"]
    assert any(r.delivery.outcome == "failed" for r in records)


async def test_hanging_receiver_times_out_and_does_not_block_others() -> None:
    hang = await Receiver(script=["hang"] * 10).start()
    ok = await Receiver().start()
    c = AlertsConfig.model_validate({
        "route": {"receiver": "slow", "group_by": ["service"], "group_wait": 0,
                  "routes": [{"matchers": ['service="search"'], "receiver": "fast"}]},
        "receivers": [{"name": "slow", "webhook_configs": [{"url": hang.url}]},
                      {"name": "fast", "webhook_configs": [{"url": ok.url}]}],
        "delivery": {"max_attempts": 2, "timeout_seconds": 0.5, "backoff_initial_seconds": 0.01},
    })
    e, records = await run(c)
    try:
        e.ingest(anomaly(at=60), T + 60)
        e.ingest(anomaly("search", at=60, episode="s1"), T + 60)
        await asyncio.wait_for(e.workers["fast"].queue.join(), 30)
        assert len(ok.received) == 1  # delivered while the other receiver hangs
        await e.drain()
    finally:
        await e.close()
        await hang.stop()
        await ok.stop()
    slow = [r for r in records if r.delivery.receiver == "slow"]
    assert slow[-1].delivery.outcome == "failed" and "Timeout" in slow[-1].delivery.reason


async def test_pagerduty_trigger_and_resolve_share_dedup_key() -> None:
    rx = await Receiver().start()
    e, _ = await run(cfg(rx.url, "pagerduty"))
    try:
        await incident(e)
    finally:
        await e.close()
        await rx.stop()
    events = [r.json for r in rx.received]
    checkout = [ev for ev in events if ev["event_action"] == "resolve" or "checkout" in ev["payload"]["summary"]]
    assert [ev["event_action"] for ev in checkout] == ["trigger", "resolve"]
    assert checkout[0]["dedup_key"] == checkout[1]["dedup_key"] and checkout[0]["routing_key"] == "rk-123"
    assert checkout[0]["payload"]["severity"] == "warning" and len(checkout[0]["payload"]["summary"]) <= 1024


def test_token_bucket_and_breaker() -> None:
    t = [0.0]
    b = TokenBucket(1.0, 2, clock=lambda: t[0])
    assert b.take() == 0 and b.take() == 0 and b.take() == pytest.approx(1.0)
    t[0] = 1.0
    assert b.take() == 0
    br = CircuitBreaker(2, 10, clock=lambda: t[0])
    br.failure()
    assert br.allow()
    br.failure()
    assert not br.allow() and br.state == "open"
    t[0] = 20
    assert br.allow() and not br.allow()  # one half-open probe
    br.success()
    assert br.state == "closed" and br.allow()


async def test_alertmanager_push_resends_firing_with_a_future_end_then_the_end() -> None:
    import time as _time
    from datetime import UTC, datetime

    rx = await Receiver().start()
    c = AlertsConfig.model_validate({
        "route": {"receiver": "am", "group_by": ["service"], "group_wait": 0, "group_interval": "500ms"},
        "receivers": [{"name": "am", "alertmanager_configs": [{"url": rx.url, "resend_interval": "1s"}]}],
    })
    e = AlertEngine(c, clock=_time.time)
    await e.start()
    try:
        now = _time.time()
        e.ingest(anomaly(at=0).model_copy(update={"timestamp": datetime.fromtimestamp(now, UTC)}), now)
        for _ in range(30):
            await asyncio.sleep(0.1)
            e.tick(_time.time())
        await e.drain()
        posts = [r.json for r in rx.received]
        assert len(posts) >= 2 and all(r.path == "/api/v2/alerts" for r in rx.received)
        ends = [datetime.fromisoformat(p[0]["endsAt"].replace("Z", "+00:00")).timestamp() for p in posts]
        assert all(x > now for x in ends)  # firing: ends in the future unless re-sent
        e.ingest(anomaly(at=0, resolved=True), _time.time())
        for _ in range(10):
            await asyncio.sleep(0.1)
            e.tick(_time.time())
        await e.drain()
        last = rx.received[-1].json[0]
        assert datetime.fromisoformat(last["endsAt"].replace("Z", "+00:00")).timestamp() <= _time.time()
    finally:
        await e.close()
        await rx.stop()


async def test_breaker_opens_after_consecutive_failures_and_spares_the_receiver() -> None:
    rx = await Receiver(script=[(503, {}, "down")] * 50).start()
    e, records = await run(cfg(rx.url, max_attempts=6, breaker_failures=2, breaker_reset_seconds=30))
    try:
        e.ingest(anomaly(at=60), T + 60)
        e.tick(T + 100)
        await e.drain()
    finally:
        await e.close()
        await rx.stop()
    assert rx.attempts == 2  # then the circuit is open: no more requests hit the receiver
    assert any(r.delivery.reason == "circuit open" for r in records)
    assert records[-1].delivery.outcome == "failed"
