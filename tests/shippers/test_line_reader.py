"""Line splitting: offsets, partial lines, CRLF, long lines, binary detection."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st
from logtide.shippers.line_reader import LineReader, is_compressed_name, looks_binary


def test_offsets_and_partial_line() -> None:
    r = LineReader(100)
    out = r.feed(b"ab\ncd\nef", 0)
    assert out == [(0, 3, b"ab", False), (3, 6, b"cd", False)]
    assert r.consumed_offset == 6
    assert r.feed(b"g\n", 8) == [(6, 10, b"efg", False)]
    assert r.consumed_offset == 10


def test_crlf_is_stripped() -> None:
    assert LineReader(100).feed(b"a\r\nb\n", 0) == [(0, 3, b"a", False), (3, 5, b"b", False)]


def test_long_line_truncated_and_rest_skipped_with_bounded_buffer() -> None:
    r = LineReader(10)
    out = r.feed(b"x" * 25, 0)
    assert out == [(0, 25, b"x" * 10, True)]
    assert r.pending_bytes == 0
    out = r.feed(b"y" * 1000, 25)
    assert out == [] and r.pending_bytes == 0
    out = r.feed(b"zz\nok\n", 1025)
    assert out == [(1028, 1031, b"ok", False)]
    assert r.consumed_offset == 1031


def test_long_line_split() -> None:
    r = LineReader(4, "split")
    out = r.feed(b"abcdefghij\nk\n", 0)
    assert [o[2] for o in out] == [b"abcd", b"efgh", b"ij", b"k"]
    assert all(o[3] for o in out[:3]) and not out[3][3]
    assert out[2][1] == 11


def test_flush_gives_last_line_without_newline() -> None:
    r = LineReader(100)
    r.feed(b"a\nlast", 0)
    assert r.flush() == (2, 6, b"last", False)
    assert r.flush() is None


@settings(max_examples=200, deadline=None)
@given(st.lists(st.binary(max_size=30), max_size=20), st.integers(1, 7), st.integers(5, 40))
def test_any_chunking_gives_the_same_lines(parts: list[bytes], chunk: int, limit: int) -> None:
    data = b"".join(parts)
    whole = LineReader(limit).feed(data, 0)
    r = LineReader(limit)
    pieces = []
    for i in range(0, len(data), chunk):
        pieces += r.feed(data[i : i + chunk], i)
    # a truncated line cut before its newline ends "where it was cut", which depends on the chunking
    assert [(s, b, t) for s, _, b, t in pieces] == [(s, b, t) for s, _, b, t in whole]
    assert [e for _, e, _, t in pieces if not t] == [e for _, e, _, t in whole if not t]
    ends = [e for _, e, _, _ in whole]
    assert ends == sorted(ends)


def test_binary_and_compressed() -> None:
    assert looks_binary(b"\x7fELF\x02\x01\x01\x00\x00\x00")
    assert looks_binary(b"\x1f\x8b\x08\x00")
    assert not looks_binary(b"Jun 14 15:16:01 combo sshd[1]: ok\n")
    assert not looks_binary("ünïcödé text\n".encode())
    assert is_compressed_name("/var/log/syslog.2.gz") and not is_compressed_name("/var/log/syslog.1")
