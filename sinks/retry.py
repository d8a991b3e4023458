"""Retrying a write until its target takes it: tenacity with exponential backoff and jitter.

A target that is down (connection refused, 429/503, timeouts) raises `TargetUnavailable`; the
write is retried whole. Every wait is logged and counted (never a silent loop); the loop stops
when the sink is asked to stop, or after `give_up_after_s` if set, by raising, so nothing is
committed for the batch.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable
from typing import TypeVar

from logtide.sinks.metrics import SinkMetrics
from tenacity import (
    AsyncRetrying,
    RetryCallState,
    retry_if_exception_type,
    stop_after_delay,
    wait_exponential_jitter,
)
from tenacity.stop import stop_base

log = logging.getLogger("logtide.sinks")
T = TypeVar("T")


class TargetUnavailable(Exception):
    """The target did not take the write for a reason that passes (outage, overload): retry it whole."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class _StopRequested(stop_base):
    def __init__(self, stopping: asyncio.Event | None) -> None:
        self.stopping = stopping

    def __call__(self, retry_state: RetryCallState) -> bool:
        return self.stopping is not None and self.stopping.is_set()


class RetryPolicy:
    def __init__(
        self,
        target: str,
        metrics: SinkMetrics,
        *,
        initial_backoff_s: float = 0.2,
        max_backoff_s: float = 30.0,
        give_up_after_s: float | None = None,
        stopping: asyncio.Event | None = None,
    ) -> None:
        self.target = target
        self.metrics = metrics
        self.initial_backoff_s = initial_backoff_s
        self.max_backoff_s = max_backoff_s
        self.give_up_after_s = give_up_after_s
        self.stopping = stopping

    async def _sleep(self, seconds: float) -> None:
        """Sleep, but wake at once when the sink is asked to stop."""
        if self.stopping is None:
            await asyncio.sleep(seconds)
            return
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self.stopping.wait(), seconds)

    async def call(self, write: Callable[[], Awaitable[T]]) -> T:
        started = time.monotonic()
        gauge = self.metrics.unavailable_seconds.labels(self.target)

        def before_sleep(state: RetryCallState) -> None:
            exc = state.outcome.exception() if state.outcome else None
            reason = exc.reason if isinstance(exc, TargetUnavailable) else repr(exc)
            waited = time.monotonic() - started
            gauge.set(waited)
            self.metrics.retries.labels(self.target, _reason_label(reason)).inc()
            log.warning(
                "%s unavailable for %.1f s (attempt %d): %s; retrying in %.1f s, nothing committed",
                self.target, waited, state.attempt_number, reason[:300], state.upcoming_sleep,
            )  # fmt: skip

        stop = _StopRequested(self.stopping)
        if self.give_up_after_s is not None:
            stop = stop | stop_after_delay(self.give_up_after_s)
        retrying = AsyncRetrying(
            retry=retry_if_exception_type(TargetUnavailable),
            # full jitter bounded by the first backoff: concurrent writers do not retry in step
            wait=wait_exponential_jitter(
                multiplier=self.initial_backoff_s, max=self.max_backoff_s, jitter=self.initial_backoff_s
            ),
            stop=stop,
            sleep=self._sleep,
            before_sleep=before_sleep,
            reraise=True,
        )
        try:
            async for attempt in retrying:
                with attempt:
                    result = await write()
        finally:
            gauge.set(0)
        if retrying.statistics.get("attempt_number", 1) > 1:
            log.info("%s took the write after %.1f s", self.target, time.monotonic() - started)
        return result


def _reason_label(reason: str) -> str:
    """A short, bounded label for the retries counter (the full reason goes to the log)."""
    return reason.split(":", 1)[0][:40]
