"""A live `logtide run` keeps its notification log in its state directory: restarted mid-incident it
does not page again, and the resolve that arrives after the restart is still delivered (the open
alert is rebuilt from anomalies.ndjson). Without the log file the restart would page twice."""

from __future__ import annotations

import asyncio
from pathlib import Path

from logtide.schemas import encode
from logtide.sinks.alerts.config import AlertsConfig

from logtide.alerts_embedded import EmbeddedAlerts
from tests.alerts.receiver import Receiver
from tests.alerts.test_kafka_process import SECRET, now_anomaly, wait_for


def cfg(url: str) -> AlertsConfig:
    return AlertsConfig.model_validate({
        "route": {"receiver": "hook", "group_by": ["service"], "group_wait": "0s", "group_interval": "1s"},
        "receivers": [{"name": "hook", "webhook_configs": [{"url": url, "secrets": [SECRET]}]}],
        "tick_seconds": 0.1,
    })


async def run_once(data: Path, url: str, records: list, settle: float = 2.5) -> EmbeddedAlerts:
    """One live run: start (replaying anomalies.ndjson), take these records as the runner would
    (written to anomalies.ndjson, handed to the alerts), let the timers run, stop."""
    alerts = EmbeddedAlerts(cfg(url), data / "alerts.ndjson", live=True)
    await alerts.start()
    with (data / "anomalies.ndjson").open("ab") as f:
        for a in records:
            f.write(encode(a) + b"\n")
            alerts.ingest(a)
    await asyncio.sleep(settle)
    await alerts.finish()
    return alerts


async def test_restart_does_not_page_again_and_still_resolves(tmp_path: Path) -> None:
    rx = await Receiver(secret=SECRET).start()
    try:
        data = tmp_path / "data"
        data.mkdir()
        await run_once(data, rx.url, [now_anomaly("checkout", "e1")])
        await wait_for(lambda: len(rx.received) == 1, 10)
        assert (data / "state" / "alerts-nflog.ndjson").exists()
        again = await run_once(data, rx.url, [now_anomaly("checkout", "e1")])  # restarted, same incident
        assert again.replayed == 1 and len(rx.received) == 1  # no second page
        await run_once(data, rx.url, [now_anomaly("checkout", "e1", resolved=True)])
        await wait_for(lambda: len(rx.received) == 2, 10)
        assert [r.json["status"] for r in rx.received] == ["firing", "resolved"]
        assert rx.received[0].json["groupKey"] == rx.received[1].json["groupKey"]
        assert all(r.signed_ok for r in rx.received)

        # the control: the same restart without the notification log pages a second time
        (data / "state" / "alerts-nflog.ndjson").unlink()
        (data / "anomalies.ndjson").unlink()
        await run_once(data, rx.url, [now_anomaly("search", "s1")])
        (data / "state" / "alerts-nflog.ndjson").unlink()
        await run_once(data, rx.url, [now_anomaly("search", "s1")])
        await wait_for(lambda: len(rx.received) == 4, 10)
        assert [r.json["groupLabels"]["service"] for r in rx.received[2:]] == ["search", "search"]
    finally:
        await rx.stop()
