"""The aggregate agent folds each points partition in offset order, without a hole (`streams.in_order`)."""

from __future__ import annotations

from logtide.streams.in_order import InOrder


def test_a_partition_starts_at_its_committed_offset_and_goes_on_in_order() -> None:
    o = InOrder()
    assert not o.started(1)
    o.start(1, 69)
    assert o.started(1)
    assert o.admit(1, [69, 70, 71]) == 3
    assert o.admit(1, [72]) == 1
    assert o.next[1] == 73


def test_messages_after_a_hole_wait_until_the_hole_is_read_again() -> None:
    # the SIGSTOP run: 69..72 never delivered to the worker, 73.. were
    o = InOrder()
    o.start(1, 69)
    assert o.admit(1, [73, 74, 75]) == 0
    assert o.next[1] == 69  # read again from here
    assert o.admit(1, [68, 69, 70, 80, 71]) == 3  # 68 was folded before: admitted (acknowledged again)
    assert o.next[1] == 71
    assert o.admit(1, [71, 72, 73]) == 3


def test_without_a_committed_offset_the_first_message_sets_the_start() -> None:
    o = InOrder()
    o.start(0, None)
    assert o.admit(0, [5, 6]) == 2
    assert o.admit(0, [8]) == 0
    assert o.next[0] == 7


def test_a_partition_forgotten_on_revocation_starts_again_at_the_next_assignment() -> None:
    o = InOrder()
    o.start(2, 10)
    assert o.admit(2, [10, 11]) == 2
    o.forget(2)
    assert not o.started(2)
    o.start(2, 40)  # another worker committed up to 40 meanwhile
    assert o.admit(2, [12]) == 1  # below: a message delivered again, harmless
    assert o.admit(2, [41]) == 0
    assert o.admit(2, [40, 41]) == 2


def test_partitions_are_independent() -> None:
    o = InOrder()
    o.start(0, 0)
    o.start(1, 100)
    assert o.admit(0, [0, 2]) == 1
    assert o.admit(1, [100, 101]) == 2
    assert o.next == {0: 1, 1: 102}
