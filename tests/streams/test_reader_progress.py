"""Idleness judged by the raw reader's progress (issue 14's chaos run): under Faust the window stage
runs apart from the readers, so a source whose partition nobody is reading (a worker restarting, a
rebalance, the broker away) must not look idle and have its events made late; a source that truly
wrote nothing while its partition was read to the end (a rotated-away file) still goes idle."""

from __future__ import annotations

from logtide.streams.config import StreamsConfig
from logtide.streams.pipeline import TICK, Mark, Stateful, decode_message
from logtide.streams.raw_reader import read_to_end
from logtide.streams.windowing import (
    LATE_IDLE_SOURCE,
    NO_TIME,
    WindowAggregator,
    WindowSpec,
    source_partition,
)

SPEC = WindowSpec(10, 10, 0)
IDLE = 1_000


def closed(agg: WindowAggregator, now: int) -> list[tuple[str, int, int]]:
    return sorted((k, c.start_ms, c.agg.count) for k, c in agg.advance(now))


def two_sources(reader_progress: bool = True) -> WindowAggregator:
    """Series `s` fed by a source on raw partition 0 and one on raw partition 1; the first is far
    ahead in event time, the second has events in the window [0, 10)."""
    agg = WindowAggregator(SPEC, idle_ms=IDLE, reader_progress=reader_progress)
    assert agg.add("s", 5, 1.0, src="1|h|b.log", now_ms=0)
    agg.mark("1|h|b.log", 5, 0)
    assert agg.add("s", 7, 1.0, src="0|h|a.log", now_ms=0)
    agg.mark("0|h|a.log", 5_000, 0)
    return agg


def test_source_partition_is_the_raw_partition_its_id_starts_with() -> None:
    assert source_partition("3|host-1|/var/log/api.log") == "3"
    assert source_partition("|host-1|/var/log/api.log") is None  # read without Kafka
    assert source_partition("\x00log.events{}") is None  # a series that is its own source
    assert source_partition("12|h|metrics") == "12"


def test_a_source_nobody_reads_never_goes_idle_however_long_the_wall_clock_runs() -> None:
    agg = two_sources()
    for now in range(0, 100 * IDLE, IDLE):
        agg.mark("0|h|a.log", 5_000 + now, now)  # partition 0 keeps speaking (and is read)
        agg.progress({"logs.raw:0": now}, now)
        assert closed(agg, now) == []  # partition 1 is not being read: its source holds the series
    # its reader comes back: the events it kept are on time, not late
    assert agg.add("s", 8, 1.0, src="1|h|b.log", now_ms=100 * IDLE)
    agg.mark("1|h|b.log", 6_000, 100 * IDLE)
    assert closed(agg, 100 * IDLE) == [("s", 0, 3)]


def test_the_same_silence_with_wall_clock_idleness_makes_those_events_late() -> None:
    """What the chaos run saw before: the window stage's clock alone closed the window early."""
    agg = two_sources(reader_progress=False)
    agg.mark("0|h|a.log", 5_000, 2 * IDLE)
    assert closed(agg, 2 * IDLE) == [("s", 0, 2)]
    assert not agg.add("s", 8, 1.0, src="1|h|b.log", now_ms=2 * IDLE)
    assert agg.last_late is not None and agg.last_late.reason == LATE_IDLE_SOURCE


def test_a_source_silent_while_its_partition_was_read_to_the_end_goes_idle() -> None:
    agg = two_sources()
    agg.progress({"logs.raw:1": IDLE - 1}, 5 * IDLE)  # read to the end, but not idle_ms after it spoke
    assert closed(agg, 5 * IDLE) == []
    agg.progress({"logs.raw:1": IDLE}, 5 * IDLE)  # read to the end idle_ms after: it wrote nothing since
    assert closed(agg, 5 * IDLE) == [("s", 0, 2)]
    # it speaks again: active again, and what it says behind the closed window is late, with the reason
    assert not agg.add("s", 9, 1.0, src="1|h|b.log", now_ms=6 * IDLE)
    assert agg.last_late is not None and agg.last_late.reason == LATE_IDLE_SOURCE


def test_every_raw_topic_of_the_partition_number_must_have_been_read() -> None:
    """Source ids carry the partition number, not the topic: the slowest report for the number counts,
    so a stalled metrics reader holds log sources of the same number too (waiting, never guessing)."""
    agg = two_sources()
    agg.progress({"metrics.raw:1": 0}, 0)
    agg.progress({"logs.raw:1": 10 * IDLE}, 10 * IDLE)
    assert closed(agg, 10 * IDLE) == []
    agg.progress({"metrics.raw:1": 10 * IDLE}, 10 * IDLE)
    assert closed(agg, 10 * IDLE) == [("s", 0, 2)]


def test_a_restored_source_counts_as_active_until_read_to_the_end_idle_ms_after_the_restore() -> None:
    agg = two_sources()
    blob = agg.series["s"]
    watermarks = {s: agg.sources[s].watermark for s in blob.sources}
    fresh = WindowAggregator(SPEC, idle_ms=IDLE, reader_progress=True)
    fresh.mark("", NO_TIME, 50 * IDLE)
    fresh.put("s", blob, watermarks)
    fresh.progress({"logs.raw:1": 50 * IDLE + IDLE - 1}, 60 * IDLE)
    assert closed(fresh, 60 * IDLE) == []
    fresh.progress({"logs.raw:1": 51 * IDLE}, 60 * IDLE)
    assert closed(fresh, 60 * IDLE) == [("s", 0, 2)]


def test_a_source_without_a_partition_keeps_wall_clock_idleness() -> None:
    agg = WindowAggregator(SPEC, idle_ms=IDLE, reader_progress=True)
    assert agg.add("s", 5, 1.0, src="|h|b.log", now_ms=0)
    agg.mark("|h|b.log", 5, 0)
    assert agg.add("s", 7, 1.0, src="0|h|a.log", now_ms=0)
    agg.mark("0|h|a.log", 5_000, 0)
    agg.mark("0|h|a.log", 5_001, 2 * IDLE)
    assert closed(agg, 2 * IDLE) == [("s", 0, 2)]


def test_progress_travels_on_a_mark_that_older_workers_read_as_a_tick() -> None:
    m = Mark("", NO_TIME, {"logs.raw:0": 1234, "metrics.raw:0": 1200})
    back = decode_message(m.to_bytes())
    assert back == m
    assert decode_message(TICK) == Mark("", NO_TIME)  # a tick stays a tick
    assert decode_message(Mark("0|h|f", 5).to_bytes()) == Mark("0|h|f", 5)
    import orjson

    d = orjson.loads(m.to_bytes())
    assert (d["s"], d["wm"]) == ("", NO_TIME)  # what an older worker reads: a tick


def test_stateful_applies_progress_marks_only_when_asked_to_judge_by_them() -> None:
    cfg = StreamsConfig.model_validate({"window": {"size_seconds": 10, "lateness_seconds": 0,
                                                   "idle_timeout_seconds": 30, "source_discovery_seconds": 0}})
    for gated in (True, False):
        sf = Stateful(cfg, reader_progress=gated)
        assert sf.windows.reader_progress is gated
        sf.apply(Mark("", NO_TIME, {"logs.raw:2": 77}).to_bytes(), now_ms=100)
        assert sf.windows.read_to_end == {"2": {"logs.raw": 77}}


def test_read_to_end_needs_the_position_at_the_high_watermark_of_a_fetch() -> None:
    assert read_to_end(10, 10, 5_000) == 5_000
    assert read_to_end(9, 10, 5_000) is None  # records still to read
    assert read_to_end(None, 10, 5_000) is None
    assert read_to_end(0, None, None) is None  # nothing fetched yet
