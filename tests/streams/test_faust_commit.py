"""Faust's commit offset: never past a message that was not acknowledged (at the committed offset, or
one it skipped reading)."""

from __future__ import annotations

from collections import defaultdict
from types import SimpleNamespace

from intervaltree import IntervalTree
from logtide.streams.faust_compat import _new_offset

TP = ("points", 0)


def consumer(committed: int | None, acked: list[int], gaps: list[tuple[int, int]] = ()) -> SimpleNamespace:
    gap = defaultdict(IntervalTree)
    for a, b in gaps:
        gap[TP].addi(a, b)
    return SimpleNamespace(
        _acked=defaultdict(list, {TP: list(acked)}),
        _acked_index=defaultdict(set, {TP: set(acked)}),
        _committed_offset=defaultdict(lambda: None, {TP: committed}),
        _gap=gap,
    )


def test_one_unacknowledged_message_at_the_committed_offset_holds_the_commit() -> None:
    # 32 was left unacknowledged (not folded); 33..35 were. Faust 0.15.3 itself returns 36 here.
    c = consumer(32, [33, 34, 35])
    assert _new_offset(c, TP) is None
    assert c._acked[TP] == [33, 34, 35]  # kept for when 32 is acknowledged
    c._acked[TP].insert(0, 32)
    c._acked_index[TP].add(32)
    assert _new_offset(c, TP) == 36


def test_consecutive_acknowledged_offsets_commit_up_to_the_first_hole() -> None:
    c = consumer(10, [10, 11, 12, 14, 15])
    assert _new_offset(c, TP) == 13
    assert c._acked[TP] == [14, 15]


def test_first_commit_and_offset_zero() -> None:
    assert _new_offset(consumer(None, [0, 1, 2]), TP) == 3
    assert (
        _new_offset(consumer(0, [1, 2]), TP) is None
    )  # 0 itself unacknowledged (Faust: `if 0` skips the check)
    assert _new_offset(consumer(0, []), TP) is None


def test_offsets_faust_skipped_reading_are_not_acknowledged() -> None:
    # Faust 0.15.3 fills its read gaps in as acknowledged (it returns 10 here): on the points topic
    # every offset is a message, and one it skipped was never folded
    c = consumer(5, [5, 6, 9], gaps=[(7, 9)])
    assert _new_offset(c, TP) == 7
    assert not c._gap[TP]
    assert _new_offset(c, TP) is None  # 7 and 8 still to come
