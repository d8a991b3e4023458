"""Every use of faust-streaming internals, in one place, for the versions it was written against.

The worker relies on four things Faust does not offer as public API:
- the context variable Faust tables read a key's partition from (`faust.streams._current_event`):
  the aggregate agent writes each partition's state under one of that partition's own events;
- the producer buffer's `max_messages` (100 by default), which makes a stream wait, with a warning,
  whenever more changelog records are pending than that; one batch writes back more by design;
- a message's `acked` flag, to leave the offsets of messages it did not fold uncommitted, and its
  `generation_id` (the group generation it was fetched in), to tell messages fetched before a rebalance.

A faust-streaming outside `SUPPORTED` fails at import with the reason, instead of misbehaving later.
"""

from __future__ import annotations

import weakref
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from typing import Any

import faust

SUPPORTED = ("0.15.",)  # written and tested against faust-streaming 0.15.3

if not faust.__version__.startswith(SUPPORTED):
    raise ImportError(
        f"logtide.streams.faust_compat was written for faust-streaming {' or '.join(v + 'x' for v in SUPPORTED)}"
        f" and finds {faust.__version__}: check `_current_event` and the producer buffer, then extend SUPPORTED"
    )

from faust.streams import _current_event  # noqa: E402 - after the version check, on purpose


@contextmanager
def as_event(event: Any) -> Iterator[None]:
    """Make table writes inside the block land in `event`'s partition (store and changelog).

    Faust picks a table key's partition from the *current* event; after `take_events` that is the last
    event of the batch, which may come from another partition.
    """
    token = _current_event.set(weakref.ref(event))
    try:
        yield
    finally:
        _current_event.reset(token)


def widen_producer_buffer(app: faust.App, max_messages: int) -> None:
    """Let up to `max_messages` changelog records wait in Faust's producer buffer before it throttles."""
    buf = app.producer.buffer
    if not hasattr(buf, "max_messages"):
        raise RuntimeError("faust producer buffer has no max_messages: faust_compat needs updating")
    buf.max_messages = max(buf.max_messages, max_messages)


def leave_uncommitted(events: Iterable[Any]) -> None:
    """Let `take_events`' automatic ack of these events (after the agent's batch) pass without recording
    their offsets for commit, so that they are delivered again: to the partition's new owner, or to this
    worker after the rebalance's seek to the committed offset.

    For messages of a partition revoked while the batch was in flight: recorded, their offsets would be
    committed once the partition came back to this worker, past messages no state has folded.
    """
    for ev in events:
        msg = ev.message
        if not hasattr(msg, "acked"):
            raise RuntimeError("faust message has no acked flag: faust_compat needs updating")
        msg.acked = True  # Message.ack is a no-op for a message already acked: Consumer.ack never sees it


def fetched_before_rebalance(app: faust.App, event: Any) -> bool:
    """Whether the event's message was fetched in an earlier group generation than the current one.

    Faust itself drops such messages as they enter a stream, but not the ones already waiting in a
    `take_events` buffer when the group rebalanced. After a rebalance Faust reads every partition again
    from its committed offset, so those would reach the agent twice, the first time *before* messages
    that precede them, and the aggregator's per-series offset marks would then skip the earlier ones as
    replays.
    """
    msg = event.message
    gen = getattr(msg, "generation_id", None)
    current = getattr(app, "consumer_generation_id", None)
    return gen is not None and current is not None and gen != current
