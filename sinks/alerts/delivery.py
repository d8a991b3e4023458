"""Delivery to receivers over HTTP (the adapter): per receiver a bounded queue, a token bucket, a
circuit breaker, and retries with exponential backoff and full jitter (tenacity).

Outcome rules, the same for every integration: 2xx is sent; 429 is retried after its Retry-After
(or the backoff); 5xx, timeouts and refused connections are retried; any other 4xx is a dead letter,
not retried, with the receiver's error text. A receiver that is down never blocks the others or the
anomaly stream: a full queue hands the notification back, and the next group flush offers it again.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

import httpx
import orjson
from logtide.sinks.alerts import payloads, signing
from logtide.sinks.alerts.config import AlertsConfig, DeliveryConfig, ReceiverConfig
from logtide.sinks.alerts.dispatch import Notification
from tenacity import (
    AsyncRetrying,
    RetryCallState,
    retry_if_exception_type,
    stop_after_attempt,
    wait_random_exponential,
)

log = logging.getLogger(__name__)


class TokenBucket:
    """`rate` tokens per second, at most `burst` saved; `acquire` waits for one."""

    def __init__(self, rate: float, burst: int, clock: Callable[[], float] = time.monotonic) -> None:
        self.rate, self.burst, self.clock = rate, burst, clock
        self.tokens, self.t = float(burst), clock()

    def take(self) -> float:
        """Take a token if there is one (0.0), else how long until there is one."""
        now = self.clock()
        self.tokens = min(self.burst, self.tokens + (now - self.t) * self.rate)
        self.t = now
        if self.tokens >= 1:
            self.tokens -= 1
            return 0.0
        return (1 - self.tokens) / self.rate

    async def acquire(self) -> bool:
        """Wait for a token; True when the caller had to wait (rate limited)."""
        waited = False
        while (d := self.take()) > 0:
            waited = True
            await asyncio.sleep(d)
        return waited


class CircuitBreaker:
    """Open after `failures` consecutive failures; after `reset` seconds one probe is let through
    (half-open): success closes it, failure opens it again."""

    def __init__(self, failures: int, reset: float, clock: Callable[[], float] = time.monotonic) -> None:
        self.failures, self.reset, self.clock = failures, reset, clock
        self.count, self.opened_at, self.probing = 0, None, False

    @property
    def state(self) -> str:
        if self.opened_at is None:
            return "closed"
        return "half-open" if self.clock() - self.opened_at >= self.reset else "open"

    def allow(self) -> bool:
        s = self.state
        if s == "closed":
            return True
        if s == "half-open" and not self.probing:
            self.probing = True
            return True
        return False

    def success(self) -> None:
        self.count, self.opened_at, self.probing = 0, None, False

    def failure(self) -> None:
        self.count += 1
        self.probing = False
        if self.count >= self.failures:
            self.opened_at = self.clock()


class Retryable(Exception):
    def __init__(self, reason: str, retry_after: float | None = None) -> None:
        super().__init__(reason)
        self.reason, self.retry_after = reason, retry_after


class DeadLetter(Exception):
    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


@dataclass(slots=True)
class Request:
    url: str
    body: bytes
    headers: dict[str, str]


@dataclass(slots=True)
class Integration:
    """One endpoint of a receiver and how it renders a notification."""

    receiver: str
    kind: str
    send_resolved: bool
    render: Callable[[Notification], Request | None]
    resend_interval: float | None = None


def _json(obj: Any) -> bytes:
    return orjson.dumps(obj)


def integrations(rc: ReceiverConfig, cfg: AlertsConfig) -> list[Integration]:
    """The integrations of one receiver, secrets read once here (never logged)."""
    out: list[Integration] = []
    for w in rc.webhook_configs:
        url, secrets, max_alerts = w.url.get_secret_value(), [s.get_secret_value() for s in w.secrets], w.max_alerts

        def render_webhook(n: Notification, url=url, secrets=secrets, max_alerts=max_alerts) -> Request:
            body = _json(payloads.webhook_v4(n, cfg.external_url, max_alerts))
            h = signing.headers(secrets, n.id, int(time.time()), body)
            return Request(url, body, {"content-type": "application/json", **h})

        out.append(Integration(rc.name, "webhook", w.send_resolved, render_webhook))
    for s in rc.slack_configs:
        surl, channel = s.url.get_secret_value(), s.channel
        out.append(Integration(rc.name, "slack", s.send_resolved,
                               lambda n, u=surl, c=channel: Request(u, _json(payloads.slack(n, c)),
                                                                    {"content-type": "application/json"})))
    for p in rc.pagerduty_configs:
        key, purl, src = p.routing_key.get_secret_value(), p.url, p.source
        out.append(Integration(rc.name, "pagerduty", p.send_resolved,
                               lambda n, k=key, u=purl, s=src: Request(u, _json(payloads.pagerduty(n, k, s)),
                                                                       {"content-type": "application/json"})))
    for a in rc.alertmanager_configs:
        aurl, ttl = a.url.rstrip("/") + "/api/v2/alerts", 3 * a.resend_interval
        out.append(Integration(rc.name, "alertmanager", a.send_resolved,
                               lambda n, u=aurl, ttl=ttl: Request(
                                   u, _json(payloads.alertmanager(n.alerts, ttl, max(n.at, time.time()))),
                                   {"content-type": "application/json"}),
                               resend_interval=a.resend_interval))
    return out


AttemptHook = Callable[[Notification, Integration, int, str, str | None], None]
DoneHook = Callable[[Notification, bool], None]


def _retry_after(value: str | None) -> float | None:
    if not value:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        return None


def _classify(r: httpx.Response) -> None:
    if 200 <= r.status_code < 300:
        return
    text = r.text[:300].strip()
    if r.status_code == 429:
        raise Retryable(f"429 {text}", _retry_after(r.headers.get("retry-after")))
    if r.status_code >= 500 or r.status_code in (408,):
        raise Retryable(f"{r.status_code} {text}")
    raise DeadLetter(f"{r.status_code} {text}")


@dataclass
class ReceiverWorker:
    """One receiver's queue and its delivery loop."""

    name: str
    items: list[Integration]
    dcfg: DeliveryConfig
    client: httpx.AsyncClient
    on_attempt: AttemptHook
    on_done: DoneHook
    on_suppressed: Callable[[str], None] = lambda reason: None
    queue: asyncio.Queue[Notification] = field(init=False)
    bucket: TokenBucket = field(init=False)
    breaker: CircuitBreaker = field(init=False)

    def __post_init__(self) -> None:
        self.queue = asyncio.Queue(self.dcfg.queue_size)
        if any(it.kind == "slack" for it in self.items):  # Slack: at most 1 message per second per webhook
            self.bucket = TokenBucket(min(self.dcfg.rate_per_second, 1.0), 1)
        else:
            self.bucket = TokenBucket(self.dcfg.rate_per_second, self.dcfg.burst)
        self.breaker = CircuitBreaker(self.dcfg.breaker_failures, self.dcfg.breaker_reset_seconds)

    def offer(self, n: Notification) -> bool:
        """Queue without waiting; False (and the notification handed back) when the queue is full."""
        try:
            self.queue.put_nowait(n)
            return True
        except asyncio.QueueFull:
            self.on_suppressed("queue_full")
            self.on_done(n, False)
            return False

    async def run(self) -> None:
        while True:
            n = await self.queue.get()
            try:
                done = True
                for it in self.items:
                    if n.only is None or n.only == it.kind:
                        done &= await self.deliver(it, n)
                self.on_done(n, done)
            except Exception:  # a bug must not stop the worker; the notification is offered again
                log.exception("delivery to %s failed unexpectedly", self.name)
                self.on_done(n, False)
            finally:
                self.queue.task_done()

    def _wait(self, state: RetryCallState) -> float:
        exc = state.outcome.exception() if state.outcome else None
        base = wait_random_exponential(multiplier=self.dcfg.backoff_initial_seconds,
                                       max=self.dcfg.backoff_max_seconds)(state)
        if isinstance(exc, Retryable) and exc.retry_after is not None:
            return min(max(exc.retry_after, 0.0), self.dcfg.backoff_max_seconds)
        return base

    async def deliver(self, it: Integration, n: Notification) -> bool:
        """True when the notification is done with (sent, or dead-lettered for good)."""
        if n.status == "resolved" and not it.send_resolved:
            return True
        attempt = 0
        try:
            async for at in AsyncRetrying(stop=stop_after_attempt(self.dcfg.max_attempts), wait=self._wait,
                                          retry=retry_if_exception_type(Retryable), reraise=True):
                with at:
                    attempt += 1
                    await self._one(it, n, attempt)
        except Retryable as exc:
            self.on_attempt(n, it, attempt, "failed", exc.reason)
            return False
        except DeadLetter as exc:
            self.on_attempt(n, it, attempt, "dead_letter", exc.reason)
            return True
        self.on_attempt(n, it, attempt, "sent", None)
        return True

    async def _one(self, it: Integration, n: Notification, attempt: int) -> None:
        if await self.bucket.acquire():
            self.on_suppressed("rate_limited")
        if not self.breaker.allow():
            self.on_attempt(n, it, attempt, "retrying", "circuit open")
            raise Retryable("circuit open")
        req = it.render(n)
        try:
            r = await self.client.post(req.url, content=req.body, headers=req.headers,
                                       timeout=self.dcfg.timeout_seconds)
            _classify(r)
        except DeadLetter:
            self.breaker.success()  # the receiver answered: it is up
            raise
        except (httpx.HTTPError, Retryable) as exc:
            self.breaker.failure()
            reason = exc.reason if isinstance(exc, Retryable) else f"{type(exc).__name__}: {exc}"
            reason = reason.replace(req.url, "<url>")[:300]  # a Slack URL is a secret
            if attempt < self.dcfg.max_attempts:
                self.on_attempt(n, it, attempt, "retrying", reason)
            raise exc if isinstance(exc, Retryable) else Retryable(reason) from exc
        self.breaker.success()


Deliverer = Callable[[Notification], Awaitable[None]]
