"""The alert core in-process, for `logtide run` and `logtide demo` (no Kafka).

The embedded runner hands each anomaly to `ingest` inside its own event loop; time is event time (the
records' own timestamps), so hours of history replayed in seconds still wait, group and resolve as
they would have live. The runner emits a file's windows as it reads it, so records of different
series come out of event-time order; with `--once` (and in the demo) they are held and fed in
event-time order at `finish`. A live `logtide run` alerts on the wall clock as anomalies come, with
a ticker for the group timers, and survives a restart as `logtide alerts` does: its notification log
is kept in `state/alerts-nflog.ndjson`, and at start the last `alerts.replay_lookback` of
`anomalies.ndjson` is replayed (event time, nothing sent) to rebuild the open alerts - so a restarted
run neither pages again nor forgets a resolve. Every decided notification and every delivery attempt
goes to `alerts.ndjson`.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import orjson

from logtide.schemas import AlertNotification, Anomaly, encode
from logtide.sinks.alerts.config import AlertsConfig
from logtide.sinks.alerts.delivery import Integration
from logtide.sinks.alerts.dispatch import Notification
from logtide.sinks.alerts.engine import AlertEngine, attempt_record
from logtide.sinks.alerts.facts import AnomalyFacts, decode_facts
from logtide.sinks.alerts.nflog_file import NotificationLogFile


def demo_alerts_config(webhook: str | None, secret: str | None, alertmanager: str | None) -> AlertsConfig:
    """One route grouped by service, Alertmanager's default timers, the receivers the flags name."""
    receiver: dict[str, Any] = {"name": "demo"}
    if webhook:
        receiver["webhook_configs"] = [{"url": webhook, "secrets": [secret] if secret else []}]
    if alertmanager:
        receiver["alertmanager_configs"] = [{"url": alertmanager}]
    return AlertsConfig.model_validate({
        "external_url": "http://localhost/logtide-demo",
        "route": {"receiver": "demo", "group_by": ["service"], "group_wait": "30s", "group_interval": "5m",
                  "repeat_interval": "4h"},
        "receivers": [receiver],
        "delivery": {"max_attempts": 4, "backoff_initial_seconds": 0.2, "backoff_max_seconds": 2,
                     "rate_per_second": 20, "burst": 20},
    })


def notification_line(n: Notification) -> str:
    when = datetime.fromtimestamp(n.at, UTC).strftime("%Y-%m-%d %H:%M:%SZ")
    metrics = ", ".join(sorted({a.labels.get("metric", "?") for a in n.alerts}))
    groups = " ".join(f"{k}={v}" for k, v in sorted(n.group_labels.items()))
    return f"{when} {n.status.upper():8} {groups} ({len(n.alerts)} alerts: {metrics}) -> {n.receiver}"


class EmbeddedAlerts:
    """An AlertEngine on event time, writing its notifications and attempts to `alerts.ndjson`."""

    def __init__(self, cfg: AlertsConfig, out: Path, on_line: Callable[[str], None] | None = None,
                 live: bool = False, state_dir: Path | None = None) -> None:
        self.out = out
        self.fh = out.open("ab")
        self.on_line = on_line
        self.live = live
        self.notifications: list[Notification] = []
        self.pending: list[Anomaly] = []
        self.nflog_file = NotificationLogFile((state_dir or out.parent / "state") / "alerts-nflog.ndjson") if live \
            else None
        self.engine = AlertEngine(
            cfg, clock=time.time if live else None, record=self._record, on_notification=self._notified,
            nflog=self.nflog_file.nflog if self.nflog_file else None,
            persist=self.nflog_file.write if self.nflog_file else (lambda k, e: None),
        )
        self._ticker: asyncio.Task[None] | None = None
        self.replayed = 0

    def _record(self, r: AlertNotification) -> None:
        self.fh.write(encode(r) + b"\n")

    def _notified(self, n: Notification) -> None:
        self.notifications.append(n)
        if not self.engine.items.get(n.receiver):  # no endpoint: this file and the terminal are the receiver
            self._record(attempt_record(n, Integration(n.receiver, "log", True, lambda _n: None), 0, "sent", None,
                                        now=n.at))
        if self.on_line is not None:
            self.on_line(notification_line(n))

    async def start(self) -> None:
        if self.live:
            self.replayed = self._replay(self.out.parent / "anomalies.ndjson")
        await self.engine.start()
        if self.live:
            self._ticker = asyncio.create_task(self._tick())

    def _replay(self, path: Path) -> int:
        """Rebuild the open alerts from the anomalies of the last `replay_lookback` (nothing is sent:
        the group timers run when live, and the notification log says what was sent already)."""
        if not path.exists():
            return 0
        since = time.time() - self.engine.cfg.replay_lookback
        n = 0
        with path.open("rb") as f:
            for line in f:
                a = decode_facts(line.rstrip(b"\n")) if line.strip() else None
                if isinstance(a, AnomalyFacts) and a.ts >= since:
                    self.engine.dispatcher.ingest(a, a.ts)
                    n += 1
        return n

    async def _tick(self) -> None:
        while True:
            await asyncio.sleep(self.engine.cfg.tick_seconds)
            self.engine.tick()
            self.fh.flush()

    def ingest(self, a: Anomaly) -> None:
        if self.live:
            self.engine.ingest(a)
        else:
            self.pending.append(a)

    async def finish(self, horizon_seconds: float | None = None) -> None:
        """Run the timers past the last record (so the last groups flush and resolve), deliver, close.
        Live: deliver what is queued and close (the notification log file keeps what was sent)."""
        if self._ticker is not None:
            self._ticker.cancel()
        for a in sorted(self.pending, key=lambda a: (a.timestamp, a.status != "firing", a.series.key)):
            self.engine.ingest(a)
            await asyncio.sleep(0)  # let the receiver workers run
        self.pending.clear()
        d = self.engine.dispatcher
        if not self.live and d.now != float("-inf"):
            horizon = d.now + (horizon_seconds if horizon_seconds is not None else
                               2 * self.engine.dispatcher.route.group_interval + self.engine.dispatcher.route.group_wait)
            while True:
                await self.engine.drain()
                due = d.due()
                if due is None or due > horizon:
                    break
                self.engine.tick(due)
            await self.engine.drain()
        await self.engine.close()
        self.fh.close()
        if self.nflog_file is not None:
            self.nflog_file.close()

    def summary(self) -> dict[str, Any]:
        return {"notifications": len(self.notifications),
                "suppressed": dict(self.engine.dispatcher.suppressed)}


def read_alerts(path: Path) -> list[dict[str, Any]]:
    return [orjson.loads(line) for line in path.read_bytes().splitlines() if line.strip()]
