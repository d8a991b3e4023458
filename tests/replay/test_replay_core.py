"""The pure parts of replay: time arguments, per-partition plans, NDJSON lines, resume tokens."""

from __future__ import annotations

import contextlib
import io

import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from logtide.progress import Progress
from logtide.replay import Window, check_window, decode_token, encode_token, event_time_ms, ndjson_line
from logtide.timespec import TimeSpecError, format_ms, parse_duration_ms, parse_time_ms
from logtide.topic_range import RateLimit, in_range, plan_partition

NOW = 1_767_225_600_000  # 2026-01-01T00:00:00Z


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("2026-01-01T00:00:00Z", NOW),
        ("2026-01-01T01:00:00+01:00", NOW),
        ("2026-01-01T00:00:00.250Z", NOW + 250),
        ("1767225600000", NOW),
        ("-2h", NOW - 2 * 3_600_000),
        ("30m", NOW - 30 * 60_000),
        ("-1h30m", NOW - 90 * 60_000),
        ("1d", NOW - 86_400_000),
        ("now", NOW),
    ],
)
def test_time_forms(text: str, expected: int) -> None:
    assert parse_time_ms(text, NOW) == expected


@pytest.mark.parametrize("text", ["2026-01-01T00:00:00", "yesterday", "", "-2x", "12:00"])
def test_bad_times_say_what_is_accepted(text: str) -> None:
    with pytest.raises(TimeSpecError):
        parse_time_ms(text, NOW)


def test_zone_is_required_and_said() -> None:
    with pytest.raises(TimeSpecError, match="no time zone"):
        parse_time_ms("2026-01-01T00:00:00", NOW)


def test_durations_and_format() -> None:
    assert parse_duration_ms("500ms") == 500
    assert parse_duration_ms("2h") == 7_200_000
    assert format_ms(NOW + 5) == "2026-01-01T00:00:00.005Z"


def test_to_before_from_is_an_error_equal_is_empty() -> None:
    with pytest.raises(ValueError, match="before"):
        check_window(10, 9)
    check_window(10, 10)


def test_half_open() -> None:
    assert in_range(10, 10, 20)
    assert not in_range(20, 10, 20)
    assert not in_range(9, 10, 20)
    assert in_range(10**15, 10, None)


def test_plan_inside_partition() -> None:
    pl = plan_partition(0, end=100, start_lookup=10, stop_lookup=60, follow=False)
    assert (pl.start, pl.stop, pl.planned, pl.empty) == (10, 60, 50, False)


def test_plan_partition_ending_before_to_stops_at_its_end() -> None:
    pl = plan_partition(0, end=100, start_lookup=10, stop_lookup=None, follow=False)
    assert (pl.start, pl.stop) == (10, 100)
    followed = plan_partition(0, end=100, start_lookup=10, stop_lookup=None, follow=True)
    assert (followed.start, followed.stop) == (10, None)


def test_plan_lookup_returning_nothing_is_empty() -> None:
    pl = plan_partition(0, end=100, start_lookup=None, stop_lookup=None, follow=False)
    assert pl.empty and pl.finished
    empty = plan_partition(0, end=0, start_lookup=None, stop_lookup=None, follow=False)
    assert empty.empty


def test_plan_resume_skips_what_was_handled() -> None:
    pl = plan_partition(0, end=100, start_lookup=10, stop_lookup=60, follow=False, resume_at=42)
    assert (pl.start, pl.position, pl.stop) == (42, 42, 60)
    done = plan_partition(0, end=100, start_lookup=10, stop_lookup=60, follow=False, resume_at=60)
    assert done.finished


def test_ndjson_line() -> None:
    assert ndjson_line(b'{"a": 1}') == b'{"a": 1}'  # exactly as stored
    assert ndjson_line(b'{\n "a": 1\n}') == b'{"a":1}'  # one line
    assert ndjson_line(b"not json") is None
    assert ndjson_line(None) is None
    assert ndjson_line(b"") is None


def test_event_time() -> None:
    assert event_time_ms(b'{"@timestamp": "2026-01-01T00:00:00Z"}') == NOW
    assert event_time_ms(b'{"@timestamp": "2026-01-01T00:00:00"}') is None  # no zone: not guessed
    assert event_time_ms(b'{"message": "x"}') is None
    assert event_time_ms(b"[1]") is None
    assert event_time_ms(b"\xff") is None


def test_event_time_window_seeks_wider() -> None:
    w = Window(NOW, NOW + 1000, "event-time", 60_000)
    assert w.seek_range() == (NOW - 60_000, NOW + 61_000)
    assert Window(NOW, NOW + 1000, "event-time", None).seek_range() == (0, None)
    assert Window(NOW, NOW + 1000).seek_range() == (NOW, NOW + 1000)


def test_resume_token_round_trip() -> None:
    w = Window(NOW, NOW + 10, "event-time", 5)
    topic, w2, pos = decode_token(encode_token("logtide.logs.raw", w, {0: 5, 3: 17}))
    assert (topic, w2, pos) == ("logtide.logs.raw", w, {0: 5, 3: 17})
    with pytest.raises(ValueError, match="resume token"):
        decode_token("garbage")


def test_rate_limit() -> None:
    r = RateLimit(100.0, started=0.0)
    assert r.delay_after(50, now=0.0) == pytest.approx(0.5)
    assert r.delay_after(50, now=2.0) == 0.0
    assert RateLimit(None).delay_after(10**6, now=0.0) == 0.0


def test_progress_plain_lines_when_not_a_terminal() -> None:
    out = io.StringIO()
    p = Progress("replay", 200, stream=out, interval_s=0.0)
    p.update(50, "2026-01-01T00:00:00.000Z")
    p.close()
    first, line = out.getvalue().splitlines()[:2]
    assert first == "replay: started, 200 rec to go"
    assert line.startswith("replay: 50/200 rec (25%)")
    assert "rec/s" in line and "ETA" in line and "at 2026-01-01T00:00:00.000Z" in line


def test_time_merge_holds_back_to_the_slowest_partition() -> None:
    from collections import namedtuple

    from logtide.replay import TimeMerge

    R = namedtuple("R", "timestamp offset")
    m = TimeMerge()
    m.add(0, [R(10, 0), R(20, 1), R(30, 2)], 30)
    assert m.limit([0, 1]) is None  # partition 1 not read yet: nothing can go
    assert m.take(m.limit([0, 1])) == []
    m.add(1, [R(15, 0)], 15)
    assert [r.timestamp for r in m.take(m.limit([0, 1]))] == [10, 15]
    m.add(1, [R(25, 1)], 25)
    assert [r.timestamp for r in m.take(m.limit([0, 1]))] == [20, 25]
    # partition 1 finished: the rest of partition 0 goes
    assert [r.timestamp for r in m.take(m.limit([0]))] == [30]
    m.add(0, [R(5, 3)], 5)  # an out-of-order timestamp is merged where it falls
    m.add(1, [R(4, 2)], 4)
    assert [r.timestamp for r in m.take_all()] == [4, 5]


@given(st.text(max_size=60) | st.from_regex(r"-?[0-9]{1,400}(\.[0-9]{1,5})?(ms|s|m|h|d|w)", fullmatch=True))
@settings(max_examples=400, deadline=None)
@example("9" * 400 + "h")  # float overflow: found by hand, kept as a regression
@example("9" * 30)
@example("²")  # a Unicode digit: found by the property test
def test_time_arguments_never_crash(text: str) -> None:
    """Whatever a user types: a time, or TimeSpecError saying what is accepted."""
    with contextlib.suppress(TimeSpecError):
        assert isinstance(parse_time_ms(text, NOW), int)


@given(st.text(max_size=200))
@settings(max_examples=300, deadline=None)
def test_resume_tokens_never_crash(text: str) -> None:
    try:
        decode_token(text)
    except ValueError as exc:
        assert "resume token" in str(exc)
