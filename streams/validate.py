"""Validate: raw bytes to a typed event, or a dead letter that keeps the bytes and the reason.

Clock skew is flagged (`clock_skew` in `logtide.flags`) and counted by the caller, never corrected:
re-timing an event would hide a broken clock and put the event in the wrong window.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import TypeVar

import orjson
from logtide.schemas import DeadLetter, DeadLetterSource, LogEvent, MetricSample, decode
from logtide.schemas.codec import DEFAULT_LIMITS, Limits, _depth_exceeds
from pydantic import ValidationError

SKEW_FLAG = "clock_skew"
T = TypeVar("T", LogEvent, MetricSample)


@dataclass(frozen=True, slots=True)
class SkewPolicy:
    """How far from `now` an event time may be before it is flagged."""

    future_s: float = 300.0
    past_s: float | None = None  # None: no wall-clock bound on the past (history is history)


def skew_of(ts: datetime, now: datetime, policy: SkewPolicy) -> str | None:
    """'future' or 'past' when `ts` lies outside the tolerated skew, else None."""
    delta = (ts - now).total_seconds()
    if delta > policy.future_s:
        return "future"
    if policy.past_s is not None and -delta > policy.past_s:
        return "past"
    return None


def fast_decode(raw: bytes, model: type[T], limits: Limits = DEFAULT_LIMITS) -> T | None:
    """The success path of `schemas.decode`, cheaper; None whenever the record might not be accepted
    as it is (the caller then runs `schemas.decode`, the reference, for the very same dead letter).

    Same steps as the reference (size cap, orjson, depth cap, object check, model validation), but
    the depth walk runs only when the count of `{` and `[` bytes (a bound on the nesting) exceeds
    the cap, and failures are not explained here.
    """
    if len(raw) > limits.max_bytes:
        return None
    try:
        obj = orjson.loads(raw)
    except orjson.JSONDecodeError:
        return None
    if not isinstance(obj, dict):
        return None
    if raw.count(b"{") + raw.count(b"[") > limits.max_depth and _depth_exceeds(obj, limits.max_depth):
        return None
    try:
        return model.model_validate(obj)
    except ValidationError:
        return None


def validate(
    raw: bytes,
    model: type[T],
    now: datetime,
    policy: SkewPolicy = SkewPolicy(),
    source: DeadLetterSource | Callable[[], DeadLetterSource] | None = None,
) -> tuple[T | DeadLetter, str | None]:
    """Decode one record; returns (event or dead letter, skew direction or None).

    A skewed event keeps its timestamp and gains the `clock_skew` flag, so downstream stages can
    keep it out of windows and every store can still find it. `source` may be a function that
    makes the dead letter's source: it is called only for a record that is dead-lettered.
    """
    ev = fast_decode(raw, model) if isinstance(raw, bytes) else None
    if ev is None:
        src = source() if callable(source) else source
        ev = decode(raw, model, source=src or DeadLetterSource(stage="validate"))
    if isinstance(ev, DeadLetter):
        return ev, None
    skew = skew_of(ev.timestamp, now, policy)
    if skew is not None and SKEW_FLAG not in ev.logtide.flags:
        ev.logtide.flags.append(SKEW_FLAG)
    return ev, skew


def validate_log(raw: bytes, now: datetime, policy: SkewPolicy = SkewPolicy(), **kw: object) -> tuple:
    """`validate` for `logs.raw` records."""
    return validate(raw, LogEvent, now, policy, **kw)  # type: ignore[arg-type]


def validate_metric(raw: bytes, now: datetime, policy: SkewPolicy = SkewPolicy(), **kw: object) -> tuple:
    """`validate` for `metrics.raw` records."""
    return validate(raw, MetricSample, now, policy, **kw)  # type: ignore[arg-type]


def is_skewed(ev: LogEvent | MetricSample) -> bool:
    """Whether validation flagged the event's clock (such events stay out of windows)."""
    return SKEW_FLAG in ev.logtide.flags
