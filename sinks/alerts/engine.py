"""The alert engine: the pure dispatcher driven by a clock, its notifications handed to receiver
workers, every attempt turned into an `AlertNotification` record and counted.

Used by `logtide alerts` (Kafka in and out) and by the demo and `logtide run` (in-process, event
time). The engine itself does no Kafka: `record` (attempt records) and `persist` (notification log
entries) are callbacks the process wires to a topic or a file.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from datetime import UTC, datetime

import httpx
from logtide.schemas import (
    AlertNotification,
    AlertStatus,
    Anomaly,
    AnomalySeverity,
    Delivery,
    EventInfo,
    stable_id,
)
from logtide.sinks.alerts.config import AlertsConfig
from logtide.sinks.alerts.delivery import Integration, ReceiverWorker, integrations
from logtide.sinks.alerts.dispatch import SUPPRESS_REASONS, Dispatcher, Notification
from logtide.sinks.alerts.facts import AnomalyFacts, facts_from_model
from logtide.sinks.alerts.metrics import AlertMetrics
from logtide.sinks.alerts.nflog import Entry, NotificationLog
from logtide.sinks.alerts.reconfigure import Reconfigured, reconfigure, sync_static_silences
from logtide.sinks.alerts.silence import Silences

_SEV = ["info", "warning", "critical"]


def attempt_record(n: Notification, it: Integration, attempt: int, outcome: str, reason: str | None,
                   *, now: float) -> AlertNotification:
    """The `logtide.alerts` record of one delivery attempt."""
    sev = max((a.labels.get("severity", "info") for a in n.alerts), key=lambda s: _SEV.index(s) if s in _SEV else 0,
              default="info")
    return AlertNotification(
        timestamp=datetime.fromtimestamp(now, UTC),
        event=EventInfo(id=stable_id("alert", n.id, repr(n.at), it.kind, attempt, outcome), kind="alert",
                        dataset="logtide.alerts"),  # n.at: a later flush of the same notification is other attempts
        logtide=AlertNotification.meta(),
        labels=dict(n.group_labels),
        status=AlertStatus(n.status),
        severity=AnomalySeverity(sev if sev in _SEV else "info"),
        fingerprint=n.group_key,
        summary=f"{n.status} {n.group_key} ({len(n.alerts)} alerts) -> {n.receiver}/{it.kind}",
        starts_at=datetime.fromtimestamp(min((a.starts_at for a in n.alerts), default=n.at), UTC),
        ends_at=(datetime.fromtimestamp(max(a.ends_at or 0 for a in n.alerts), UTC)
                 if n.alerts and all(a.resolved() for a in n.alerts) else None),
        annotations={"webhook_id": n.id},
        anomaly_ids=sorted({a.episode for a in n.alerts}),
        delivery=Delivery(receiver=n.receiver, integration=it.kind, group_key=n.group_key, attempt=attempt,
                          outcome=outcome, reason=reason, content_hash=n.content_hash),  # type: ignore[arg-type]
    )


class AlertEngine:
    """Dispatcher + receiver workers. `clock` is None for event time (the caller passes `now`)."""

    def __init__(
        self,
        cfg: AlertsConfig,
        *,
        silences: Silences | None = None,
        nflog: NotificationLog | None = None,
        record: Callable[[AlertNotification], None] = lambda r: None,
        persist: Callable[[str, Entry | None], None] = lambda k, e: None,
        on_notification: Callable[[Notification], None] = lambda n: None,
        metrics: AlertMetrics | None = None,
        clock: Callable[[], float] | None = time.time,
    ) -> None:
        self.cfg = cfg
        self.metrics = metrics or AlertMetrics()
        self.record, self.persist, self.on_notification, self.clock = record, persist, on_notification, clock
        self.items = {r.name: integrations(r, cfg) for r in cfg.receivers}
        send_resolved = {name: any(i.send_resolved for i in its) or not its for name, its in self.items.items()}
        self.dispatcher = Dispatcher(cfg, silences, nflog, send_resolved)
        sync_static_silences(self.dispatcher.silences, cfg.silences, time.time())  # the file's silences
        self.client = httpx.AsyncClient()
        self.workers: dict[str, ReceiverWorker] = {}
        self.tasks: list[asyncio.Task[None]] = []
        self._seen_suppressed = {r: 0 for r in SUPPRESS_REASONS}
        self.event_now = float("-inf")
        self._last_resend: dict[str, float] = {}
        self._started = False
        self._worker_tasks: dict[str, asyncio.Task[None]] = {}
        self._in_flight: dict[int, Notification] = {}  # handed to a worker, outcome not reported yet
        self._renamed: dict[int, str] = {}  # in-flight notifications whose group a reload renamed: its new key
        self._retiring: dict[str, ReceiverWorker] = {}  # receivers removed by a reload, still owed resolves

    def now(self) -> float:
        return self.clock() if self.clock is not None else self.event_now

    async def start(self) -> None:
        self._started = True
        for name in self.items:
            self._start_worker(name)

    def _start_worker(self, name: str) -> None:
        w = ReceiverWorker(name, self.items[name], self.cfg.delivery, self.client, self._attempt, self._done,
                           lambda reason: self.metrics.suppressed.labels(reason).inc())
        self.workers[name] = w
        task = asyncio.create_task(w.run(), name=f"alerts-{name}")
        self.tasks.append(task)
        self._worker_tasks[name] = task

    async def _retire_worker(self, w: ReceiverWorker, task: asyncio.Task[None]) -> None:
        """A replaced receiver's worker delivers what it holds, then stops."""
        await w.queue.join()
        task.cancel()

    def reconfigure(self, cfg: AlertsConfig) -> Reconfigured:
        """Apply a reloaded `alerts` section (see `reconfigure`): receivers whose settings changed get a
        new worker (the old one finishes its queue), removed ones are kept until no group owes them a
        resolve; the dispatcher's groups and notification log follow their routes; the file's silences
        are the ones in force."""
        old = self.cfg
        every = old.delivery != cfg.delivery or old.external_url != cfg.external_url
        before = {r.name: r for r in old.receivers}
        changed = [r for r in cfg.receivers if every or before.get(r.name) != r]
        names = {r.name for r in cfg.receivers}
        self.cfg = cfg
        for rc in changed:
            self.items[rc.name] = integrations(rc, cfg)
        for name in [n for n in self.items if n not in names]:
            del self.items[name]
            if name in self.workers:
                self._retiring[name] = self.workers[name]
        send_resolved = {name: any(i.send_resolved for i in its) or not its for name, its in self.items.items()}
        out = reconfigure(self.dispatcher, cfg, send_resolved)
        now = self.now()  # the engine's time (event time in replays and the demo)
        out.silences_added, out.silences_ended = sync_static_silences(
            self.dispatcher.silences, cfg.silences, now if now > float("-inf") else time.time())
        for old_key, new_key in out.moved_log.items():
            self.persist(new_key, self.dispatcher.nflog.entries[new_key])
            self.persist(old_key, None)
        for n in self._in_flight.values():  # sent before the reload: their outcome belongs to the renamed group
            if n.group_key in out.renamed:
                self._renamed[id(n)] = out.renamed[n.group_key]
        if self._started:  # workers follow the receivers
            for rc in changed:
                w, task = self.workers.get(rc.name), self._worker_tasks.get(rc.name)
                if w is not None and task is not None:
                    self.tasks.append(asyncio.create_task(self._retire_worker(w, task)))
                self._retiring.pop(rc.name, None)
                self._start_worker(rc.name)
        self._drop_retired_workers()
        return out

    def _drop_retired_workers(self) -> None:
        """Stop the workers of removed receivers once no group owes them anything."""
        for name in list(self._retiring):
            if not any(g.route.receiver == name for g in self.dispatcher.groups.values()):
                w = self._retiring.pop(name)
                self.workers.pop(name, None)
                task = self._worker_tasks.pop(name, None)
                if task is not None:
                    self.tasks.append(asyncio.create_task(self._retire_worker(w, task)))

    async def close(self) -> None:
        for t in self.tasks:
            t.cancel()
        await asyncio.gather(*self.tasks, return_exceptions=True)
        await self.client.aclose()

    async def drain(self) -> None:
        """Wait until every queued notification has been delivered or given up."""
        for w in self.workers.values():
            await w.queue.join()

    # --- input and timers -------------------------------------------------------------------------
    def ingest(self, a: Anomaly | AnomalyFacts, now: float | None = None) -> None:
        """One anomaly record; `now` defaults to the clock, or to the record's time in event time."""
        f = a if isinstance(a, AnomalyFacts) else facts_from_model(a)
        if now is None:
            now = self.clock() if self.clock is not None else f.ts
        self.tick(now)  # timers due before this record fire first (event time may jump forward)
        self.metrics.anomalies.labels("resolved" if f.resolved else "firing").inc()
        self.dispatcher.ingest(f, now)
        self.tick(now)

    def ingest_batch(self, batch: list[AnomalyFacts], now: float) -> None:
        """Records that arrived together, all at `now` (live): the timers run once before and once
        after, which is what ticking around each record would do when the time does not move."""
        self.tick(now)
        if batch:
            resolved = 0
            for f in batch:
                resolved += f.resolved
                self.dispatcher.ingest(f, now)
            if resolved:
                self.metrics.anomalies.labels("resolved").inc(resolved)
            if len(batch) > resolved:
                self.metrics.anomalies.labels("firing").inc(len(batch) - resolved)
            self.tick(now)

    def tick(self, now: float | None = None) -> list[Notification]:
        """Flush due groups and hand their notifications to the workers."""
        now = self.now() if now is None else now
        self.event_now = max(self.event_now, now)
        out = self.dispatcher.advance(now)
        self._persist_dropped()
        self._resend(now)
        for n in out:
            self.on_notification(n)
            w = self.workers.get(n.receiver)
            if w is None or not w.items:  # a receiver with no integration: done as soon as decided
                self._done(n, True)
            else:
                self._in_flight[id(n)] = n
                w.offer(n)
        self._count_suppressed()
        self.metrics.groups.set(len(self.dispatcher.groups))
        if self._retiring:
            self._drop_retired_workers()
        return out

    def _resend(self, now: float) -> None:
        """Re-send firing alerts to the integrations that expire them otherwise (Alertmanager)."""
        for name, its in self.items.items():
            for it in its:
                if it.resend_interval is None or now < self._last_resend.get(name, float("-inf")) + it.resend_interval:
                    continue
                self._last_resend[name] = now
                alerts = self.dispatcher.firing_for(name, now)
                if alerts and name in self.workers:
                    fps = frozenset(a.fp for a in alerts)
                    self.workers[name].offer(Notification(name, "resend", {}, [a.copy() for a in alerts], fps,
                                                          frozenset(), now, "resend", only=it.kind))

    def _count_suppressed(self) -> None:
        for r in SUPPRESS_REASONS:
            d = self.dispatcher.suppressed[r] - self._seen_suppressed[r]
            if d:
                self.metrics.suppressed.labels(r).inc(d)
                self._seen_suppressed[r] += d

    # --- delivery outcomes ------------------------------------------------------------------------
    def _attempt(self, n: Notification, it: Integration, attempt: int, outcome: str, reason: str | None) -> None:
        self.metrics.attempts.labels(n.receiver, it.kind, outcome).inc()
        self.record(attempt_record(n, it, attempt, outcome, reason, now=time.time()))

    def _done(self, n: Notification, done: bool) -> None:
        if n.only is not None:
            return  # a re-send: the notification log is not involved
        self._in_flight.pop(id(n), None)
        n.group_key = self._renamed.pop(id(n), n.group_key)  # sent before a reload renamed its group
        entry = self.dispatcher.delivered(n, done, self.now())
        if entry is not None:
            self.persist(n.log_key, entry)
        self._persist_dropped()

    def _persist_dropped(self) -> None:
        """Keys the dispatcher dropped from the notification log are dropped from its durable copy too,
        so a restart or another instance starts the group's next notifications from the same count."""
        dropped = self.dispatcher.dropped_log
        while dropped:
            self.persist(dropped.pop(0), None)
