"""Our alerts pushed to a real Alertmanager (POST /api/v2/alerts) come out of its far side: its own
webhook receiver, a loopback HTTP server, gets the firing notification and then the resolve."""

from __future__ import annotations

import asyncio
import time
from datetime import UTC, datetime
from pathlib import Path

from logtide.sinks.alerts.config import AlertsConfig
from logtide.sinks.alerts.engine import AlertEngine

from tests.alerts.alertmanager import Alertmanager
from tests.alerts.helpers import anomaly
from tests.alerts.receiver import Receiver


async def wait_for(cond, timeout: float = 60) -> None:
    end = time.monotonic() + timeout
    while not cond():
        assert time.monotonic() < end, "condition not met in time"
        await asyncio.sleep(0.1)


async def test_alert_comes_out_of_a_real_alertmanager(tmp_path: Path) -> None:
    rx = await Receiver().start()
    am = await asyncio.to_thread(Alertmanager, tmp_path / "am", rx.url + "/from-am")
    cfg = AlertsConfig.model_validate({
        "route": {"receiver": "am", "group_by": ["service"], "group_wait": 0, "group_interval": "1s"},
        "receivers": [{"name": "am", "alertmanager_configs": [{"url": am.url}]}],
        "static_labels": {"env": "test"},
    })
    e = AlertEngine(cfg, clock=time.time)
    await e.start()
    try:
        now = time.time()
        e.ingest(anomaly("checkout", at=0, episode="ep-am").model_copy(
            update={"timestamp": datetime.fromtimestamp(now, UTC)}), now)
        await wait_for(lambda: any(r.json["status"] == "firing" for r in rx.received))
        firing = next(r.json for r in rx.received if r.json["status"] == "firing")
        assert firing["version"] == "4" and firing["groupLabels"] == {"service": "checkout"}
        labels = firing["alerts"][0]["labels"]
        assert labels["alertname"] == "LogtideAnomaly" and labels["env"] == "test"
        assert labels["metric"] == "log.error_ratio" and "value" in firing["alerts"][0]["annotations"]
        e.ingest(anomaly("checkout", at=60, episode="ep-am", resolved=True), time.time())
        for _ in range(30):
            e.tick(time.time())
            await asyncio.sleep(0.2)
            if any(r.json["status"] == "resolved" for r in rx.received):
                break
        resolved = [r.json for r in rx.received if r.json["status"] == "resolved"]
        assert resolved and resolved[0]["alerts"][0]["labels"] == labels
        sent = e.metrics.attempts.labels("am", "alertmanager", "sent")._value.get()
        assert sent >= 2
    finally:
        await e.close()
        await asyncio.to_thread(am.stop)
        await rx.stop()
