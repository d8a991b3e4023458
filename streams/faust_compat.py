"""Every use of faust-streaming internals, in one place, for the versions it was written against.

The worker relies on five things Faust does not offer as public API:
- the context variable Faust tables read a key's partition from (`faust.streams._current_event`):
  the aggregate agent writes each partition's state under one of that partition's own events;
- the producer buffer's `max_messages` (100 by default), which makes a stream wait, with a warning,
  whenever more changelog records are pending than that; one batch writes back more by design;
- a message's `acked` flag, to leave the offsets of messages it did not fold uncommitted, and its
  `generation_id` (the group generation it was fetched in), to tell messages fetched before a rebalance;
- `Consumer._new_offset`, replaced by `commit_only_acknowledged`: Faust's own commits past one
  unacknowledged message sitting exactly at the committed offset, and past offsets it skipped reading;
- `Consumer._committed_offset` and `Consumer.seek_wait`, to fold a partition's messages in offset order
  (`committed_offset`, `read_again_from`).

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
from faust.transport.consumer import Consumer  # noqa: E402
from faust.utils.functional import consecutive_numbers  # noqa: E402


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


def _new_offset(self: Any, tp: Any) -> int | None:
    """Faust 0.15.3's `Consumer._new_offset` with its head check made exact and without its gaps.

    Faust returns None (nothing to commit) only when the smallest acknowledged offset is more than one
    past the committed offset (`min(acked) - committed > 1`), so a single message at the committed offset
    that was left unacknowledged (not folded: `leave_uncommitted`) is committed past as soon as the
    message after it is acknowledged, and lost to whoever reads the partition next. And it counts the
    offsets it saw missing between two messages it read (`_gap`, meant for compacted or transactional
    topics) as acknowledged; on the points topic such offsets are messages it skipped (a worker woken
    after SIGSTOP committed past one it never folded). The topics the worker's agents read are its own
    points topics: neither compacted nor transactional, so every offset is a message, the head check can
    be exact and only acknowledged offsets are committed.
    """
    acked = self._acked[tp]
    self._gap[tp].clear()  # offsets Faust skipped while reading are messages not folded, not acknowledged
    if not acked:
        return None
    acked.sort()
    committed = self._committed_offset[tp]
    if committed is not None and acked[0] > committed:
        return None  # the message at the committed offset is not acknowledged yet
    batch = next(consecutive_numbers(acked))
    acked[: len(batch)] = []
    self._acked_index[tp].difference_update(batch)
    return batch[-1] + 1


def commit_only_acknowledged() -> None:
    """Install the exact `_new_offset` (idempotent)."""
    if not callable(getattr(Consumer, "_new_offset", None)):
        raise RuntimeError("faust Consumer has no _new_offset: faust_compat needs updating")
    Consumer._new_offset = _new_offset


def committed_offset(app: faust.App, tp: Any) -> int | None:
    """The offset Faust's consumer holds as committed for `tp` (None: unknown, or 0)."""
    offsets = getattr(app.consumer, "_committed_offset", None)
    if offsets is None:
        raise RuntimeError("faust consumer has no _committed_offset: faust_compat needs updating")
    return offsets.get(tp)


async def read_again_from(app: faust.App, tp: Any, offset: int) -> None:
    """Make Faust deliver `tp` again from `offset`: its consumer thread's position and its read offset
    (below which it drops messages as read already)."""
    if not callable(getattr(app.consumer, "seek_wait", None)):
        raise RuntimeError("faust consumer has no seek_wait: faust_compat needs updating")
    await app.consumer.seek_wait({tp: offset})
