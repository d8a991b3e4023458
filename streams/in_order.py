"""Each points partition folded in offset order, without a hole (pure; the aggregate agent applies it).

Why: the aggregator's per-series marks skip a message whose offset range ends at or before the newest
one folded for its (series, source). That is exact only if every message is folded in offset order:
one folded after a later one of its series is taken for a replay and skipped, and one never folded
is lost. Faust does not guarantee it around rebalances: a worker woken by SIGCONT next to the owner
that had taken its partitions over, and given some back, was never delivered the messages at the
committed offset of one of them while the later ones came (and committed past one in another).
So the agent folds a message only when its offset is the next one expected; what comes after a hole
is left uncommitted and the partition is read again from the hole.
"""

from __future__ import annotations

from collections.abc import Sequence


class InOrder:
    """Per partition, the offset the next message to fold must have."""

    def __init__(self) -> None:
        self.next: dict[int, int] = {}
        self._started: set[int] = set()

    def started(self, partition: int) -> bool:
        return partition in self._started

    def start(self, partition: int, committed: int | None) -> None:
        """A partition assigned: it starts at the committed offset (None, unknown: at the first message)."""
        self._started.add(partition)
        if committed is not None:
            self.next[partition] = committed
        else:
            self.next.pop(partition, None)

    def forget(self, partition: int) -> None:
        self._started.discard(partition)
        self.next.pop(partition, None)

    def admit(self, partition: int, offsets: Sequence[int]) -> int:
        """How many of `offsets` (one partition's messages in delivery order) may be folded: all up to
        the first one past a hole. One below the next expected is a message delivered again (folded
        before, its replay skipped by the marks): admitted, so that it is acknowledged again."""
        nxt = self.next.get(partition)
        n = 0
        for o in offsets:
            if nxt is None or o == nxt:
                nxt = o + 1
            elif o > nxt:
                break
            n += 1
        if nxt is not None:
            self.next[partition] = nxt
        return n
