"""Windows against a brute-force recomputation; lateness; the sketch's accuracy guarantee."""

from __future__ import annotations

import math

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from logtide.streams.windowing import (
    LATE_IDLE_SOURCE,
    LATE_OUT_OF_ORDER,
    Agg,
    SeriesWindows,
    Sketch,
    SourceClock,
    WindowAggregator,
    WindowSpec,
)


def brute_force(spec: WindowSpec, events: list[tuple[str, int, float]]):
    """Replay arrival order: a series' stream time = the max it has seen; an event joins every window
    of it still open."""
    stream: dict[str, int] = {}
    accepted: dict[tuple[str, int], list[float]] = {}
    late = []
    for key, ts, v in events:
        stream[key] = max(stream.get(key, ts), ts)
        wins = [(s, e) for s, e in spec.windows_of(ts) if stream[key] < e + spec.lateness_ms]
        if not wins:
            late.append((key, ts, v))
        for s, _e in wins:
            accepted.setdefault((key, s), []).append(v)
    return accepted, late


def run(spec: WindowSpec, events, restart_every: int | None = None):
    agg = WindowAggregator(spec)
    out: dict[tuple[str, int], Agg] = {}
    late = []
    for i, (key, ts, v) in enumerate(events):
        if not agg.add(key, ts, v):
            late.append((key, ts, v))
        for k, c in agg.advance():
            assert (k, c.start_ms) not in out, "window emitted twice"
            assert c.end_ms - c.start_ms == spec.size_ms
            out[(k, c.start_ms)] = c.agg
        if restart_every and i % restart_every == 0:
            # state round-trip, as through a table
            fresh = WindowAggregator(spec)
            for k, sw in agg.series.items():
                fresh.put(k, SeriesWindows.from_plain(spec, sw.to_plain()))
            agg = fresh
    for k, c in agg.flush():
        assert (k, c.start_ms) not in out
        out[(k, c.start_ms)] = c.agg
    return out, late


specs = st.builds(
    lambda step, k, late: WindowSpec(step * k, step, late),
    st.sampled_from([1, 5, 10]),
    st.integers(1, 4),
    st.integers(0, 30),
)
events_st = st.lists(
    st.tuples(st.sampled_from(["a", "b", "c"]), st.integers(0, 200), st.floats(-1e6, 1e6, allow_nan=False)),
    max_size=120,
)


@settings(max_examples=300, deadline=None)
@given(specs, events_st, st.sampled_from([None, 3]))
def test_windows_equal_brute_force(spec: WindowSpec, events, restart_every) -> None:
    out, late = run(spec, events, restart_every)
    expected, exp_late = brute_force(spec, events)
    assert late == exp_late
    assert set(out) == set(expected)
    for k, vals in expected.items():
        a = out[k]
        assert a.count == len(vals)
        assert a.min == min(vals) and a.max == max(vals)
        assert math.isclose(a.sum, math.fsum(vals), rel_tol=1e-9, abs_tol=1e-6)


@settings(max_examples=200, deadline=None)
@given(specs, events_st)
def test_late_events_never_reach_emitted_windows(spec: WindowSpec, events) -> None:
    agg = WindowAggregator(spec)
    emitted: dict[tuple[str, int], int] = {}
    for key, ts, v in events:
        before = dict(emitted)
        agg.add(key, ts, v)
        for k, c in agg.advance():
            emitted[(k, c.start_ms)] = c.agg.count
        # nothing emitted before may change or reappear
        for k, n in before.items():
            assert emitted[k] == n


def test_tumbling_example_and_lateness() -> None:
    spec = WindowSpec(10_000, 10_000, 2_000)
    agg = WindowAggregator(spec)
    for ts, v in [(1_000, 1.0), (5_000, 3.0), (9_999, 5.0), (10_000, 7.0)]:
        assert agg.add("s", ts, v)
    assert list(agg.advance()) == []  # 10_000 < 10_000 + 2_000
    assert agg.add("s", 8_000, 2.0)  # within lateness: folded into [0, 10s)
    assert agg.add("s", 12_000, 1.0)
    closed = list(agg.advance())
    assert [(c.start_ms, c.end_ms, c.agg.count, c.agg.sum) for _, c in closed] == [(0, 10_000, 4, 11.0)]
    assert not agg.add("s", 9_000, 100.0)  # its only window is closed: late
    assert [c.agg.sum for _, c in agg.flush()] == [8.0]


def test_hopping_event_in_several_windows() -> None:
    spec = WindowSpec(30, 10, 0)
    agg = WindowAggregator(spec)
    agg.add("s", 25, 1.0)
    got = [(c.start_ms, c.agg.count) for _, c in agg.flush()]
    assert got == [(0, 1), (10, 1), (20, 1)]


def test_partially_late_event_goes_to_open_windows_only() -> None:
    spec = WindowSpec(20, 10, 0)
    agg = WindowAggregator(spec)
    agg.add("s", 5, 1.0)
    agg.add("s", 21, 1.0)  # closes [-10, 10) ... [0, 20) is still open until 20 -> closed at 21? end=20 <= 21
    first = {c.start_ms: c.agg.count for _, c in agg.advance()}
    assert first == {-10: 1, 0: 1}
    assert agg.add("s", 15, 1.0)  # [0,20) closed, [10,30) open
    rest = {c.start_ms: c.agg.count for _, c in agg.flush()}
    assert rest == {10: 2, 20: 1}


def test_spec_rejects_non_multiple() -> None:
    with pytest.raises(ValueError):
        WindowSpec(15, 10)


@settings(max_examples=200, deadline=None)
@given(
    st.lists(st.floats(-1e9, 1e9, allow_nan=False), min_size=1, max_size=300), st.sampled_from([0.01, 0.02])
)
def test_sketch_relative_accuracy_and_merge(values, alpha) -> None:
    half = len(values) // 2
    a, b = Sketch(alpha), Sketch(alpha)
    for v in values[:half]:
        a.add(v)
    for v in values[half:]:
        b.add(v)
    a.merge(b)
    a = Sketch.from_plain(a.to_plain())
    srt = sorted(values)
    for q in (0.0, 0.5, 0.9, 0.99, 1.0):
        true = srt[int(q * (len(srt) - 1))]
        got = a.quantile(q)
        if abs(true) <= Sketch.MIN_VALUE:
            assert got == 0.0
        else:
            assert abs(got - true) <= alpha * abs(true) * (1 + 1e-9), (q, true, got)


def test_sketch_agrees_with_ddsketch() -> None:
    import random

    from ddsketch import DDSketch

    rnd = random.Random(7)
    ours, theirs = Sketch(0.01), DDSketch(0.01)
    for _ in range(5000):
        v = rnd.lognormvariate(3, 1)
        ours.add(v)
        theirs.add(v)
    for q in (0.5, 0.9, 0.99):
        assert math.isclose(ours.quantile(q), theirs.get_quantile_value(q), rel_tol=0.021)


def test_another_series_far_ahead_never_closes_a_series_idleness_is_wall_clock() -> None:
    spec = WindowSpec(10, 10, 0)
    agg = WindowAggregator(spec, idle_ms=100)
    agg.add("x", 5, 1.0, src="slow", now_ms=0)
    agg.mark("slow", 5, 0)
    agg.add("y", 50, 1.0, src="fast", now_ms=0)
    agg.mark("fast", 5_000_000, 0)  # a fast source's event time runs far ahead
    assert [(k, c.start_ms) for k, c in agg.advance(0)] == [("y", 50)]  # x is not touched by it
    assert agg.add("x", 6, 1.0, src="slow", now_ms=50)  # so its events are on time
    assert list(agg.advance(120)) == []  # 70 ms of wall clock since `slow` spoke: not idle yet
    # a series fed by both sources is held back by the slower one until that one is idle (wall clock)
    agg.add("both", 7, 1.0, src="slow", now_ms=120)
    assert agg.add("both", 5_000_000, 1.0, src="fast", now_ms=120)
    agg.mark("fast", 5_000_001, 120)
    assert list(agg.advance(150)) == []
    agg.mark("fast", 5_000_002, 300)  # `fast` still speaks; `slow` silent for 180 ms of wall clock
    got = sorted((k, c.start_ms, c.agg.count) for k, c in agg.advance(300))
    assert got == [("both", 0, 1)]  # x, fed by `slow` only, waits for `slow`
    # the idle source speaks again behind the watermark: late, with the reason
    assert not agg.add("both", 8, 1.0, src="slow", now_ms=310)
    assert agg.last_late is not None and agg.last_late.reason == LATE_IDLE_SOURCE
    assert agg.last_late.series_watermark_ms >= 10


def test_one_future_stamped_line_cannot_move_its_source_clock() -> None:
    c = SourceClock()
    jump = 120_000
    assert not c.observe(0, jump)  # starts the timeline (held until the next event confirms it)
    for t in range(1_000, 60_000, 1_000):
        assert not c.observe(t, jump)
    assert c.observe(59_000 + 240_000, jump)  # 4 minutes ahead: flagged, not accepted
    assert c.watermark == 59_000
    for t in range(60_000, 120_000, 1_000):
        assert not c.observe(t, jump)
    assert c.watermark == 119_000
    # a real gap (two events agree) moves it
    assert c.observe(3_600_000, jump)
    assert not c.observe(3_601_000, jump)
    assert c.watermark == 3_600_000
    assert SourceClock.from_plain(c.to_plain()) == c


def test_zero_count_windows_between_data_and_a_bounded_tail() -> None:
    spec = WindowSpec(10, 10, 0)
    agg = WindowAggregator(spec, zero_fill=lambda k: k == "count", zero_fill_max=3)
    for key in ("count", "mean"):
        agg.add(key, 5, 1.0, src="s", now_ms=0)
        agg.add(key, 35, 1.0, src="s", now_ms=0)
    agg.mark("s", 100, 0)
    got = sorted((k, c.start_ms, c.agg.count) for k, c in agg.advance(0))
    assert got == [("count", 0, 1), ("count", 10, 0), ("count", 20, 0), ("count", 30, 1), ("count", 40, 0),
                   ("count", 50, 0), ("count", 60, 0), ("mean", 0, 1), ("mean", 30, 1)]
    assert Agg().stats()["count"] == 0 and Agg().stats()["mean"] == 0.0


def _run_sources(spec, events, jump_ms=None, restarts=()):
    """Drive the aggregator as the pipeline does: clock per source, point, mark, advance; state
    round-tripped (as through a table) at the given positions. Returns (windows, late events).
    Without `jump_ms` a source's watermark is its newest event time (no outlier guard)."""
    agg = WindowAggregator(spec)
    clocks: dict[str, SourceClock] = {}
    out: dict[tuple[str, int], Agg] = {}
    late = []
    for i, (src, key, ts, v) in enumerate(events):
        c = clocks.setdefault(src, SourceClock())
        if jump_ms is None:
            c.watermark = max(c.watermark, ts)
        else:
            c.observe(ts, jump_ms)
        if not agg.add(key, ts, v, src=src, now_ms=i):
            late.append((src, key, ts, v, agg.last_late.reason))
        agg.mark(src, c.watermark, i)
        for k, w in agg.advance(i):
            assert (k, w.start_ms) not in out, "window emitted twice"
            out[(k, w.start_ms)] = w.agg
        if i in restarts:
            marks = {s: st.watermark for s, st in agg.sources.items()}
            fresh = WindowAggregator(spec)
            fresh._tick(i)
            for k, sw in agg.series.items():
                fresh.put(k, SeriesWindows.from_plain(spec, sw.to_plain()), marks)
            agg = fresh
            clocks = {s: SourceClock.from_plain(c.to_plain()) for s, c in clocks.items()}
    for k, w in agg.flush():
        assert (k, w.start_ms) not in out
        out[(k, w.start_ms)] = w.agg
    return out, late


def _recount(spec, events):
    """Brute force: every event in each of its windows still open by its source's newest earlier event
    time (all of them for in-order sources); the events with no open window are the late ones."""
    want: dict[tuple[str, int], list[float]] = {}
    newest: dict[str, int] = {}
    late = []
    for src, key, ts, v in events:
        wins = [s for s, e in spec.windows_of(ts) if src not in newest or not spec.closed(e, newest[src])]
        if not wins:
            late.append((src, key, ts, v))
        for s in wins:
            want.setdefault((key, s), []).append(v)
        newest[src] = max(newest.get(src, ts), ts)
    return want, late


def _same(out, want) -> None:
    assert set(out) == set(want)
    for k, vals in want.items():
        a = out[k]
        assert a.count == len(vals)
        assert math.isclose(a.sum, math.fsum(vals), rel_tol=1e-9, abs_tol=1e-6)


@st.composite
def in_order_sources(draw):
    """2-4 sources, each in order at its own speed with gaps (some beyond the jump bound), feeding
    its own series and one shared series; any interleaving; each source's first event opens it."""
    n = draw(st.integers(2, 4))
    streams = []
    for s in range(n):
        t = draw(st.integers(0, 500))
        evs = []
        for j in range(draw(st.integers(1, 40))):
            t += draw(st.one_of(st.integers(0, 30), st.integers(0, 600)))  # speeds differ; gaps > jump
            key = "shared" if j == 0 else draw(st.sampled_from(["shared", f"own{s}", f"own{s}b"]))
            evs.append((f"src{s}", key, t, float(draw(st.integers(-5, 5)))))
        streams.append(evs)
    first = [evs[0] for evs in streams]
    rest = [list(evs[1:]) for evs in streams]
    order = draw(st.lists(st.sampled_from(range(n)), min_size=sum(map(len, rest)), max_size=sum(map(len, rest))))
    merged = []
    for i in order:
        if rest[i]:
            merged.append(rest[i].pop(0))
    for r in rest:
        merged += r
    return first + merged


@settings(max_examples=300, deadline=None)
@given(specs, in_order_sources(), st.lists(st.integers(0, 160), max_size=4))
def test_in_order_sources_at_any_speed_equal_a_recount_with_no_late_events(spec, events, restarts) -> None:
    out, late = _run_sources(spec, events, jump_ms=100, restarts=set(restarts))
    assert late == []
    want, want_late = _recount(spec, events)
    assert want_late == []
    _same(out, want)


@st.composite
def out_of_order_sources(draw):
    """Sources with jitter: each event up to 60 ms behind its source's newest; any interleaving."""
    n = draw(st.integers(1, 3))
    streams = []
    for s in range(n):
        t, evs = draw(st.integers(0, 100)), []
        for _ in range(draw(st.integers(1, 40))):
            t += draw(st.integers(0, 20))
            ts = max(0, t - draw(st.sampled_from([0, 0, 0, 5, 15, 40, 60])))
            evs.append((f"src{s}", draw(st.sampled_from([f"a{s}", f"b{s}"])), ts, float(draw(st.integers(0, 9)))))
        streams.append(evs)
    order = draw(st.permutations([i for i, evs in enumerate(streams) for _ in evs]))
    pos = [0] * n
    out = []
    for i in order:
        out.append(streams[i][pos[i]])
        pos[i] += 1
    return out


@settings(max_examples=300, deadline=None)
@given(specs, out_of_order_sources())
def test_out_of_order_within_lateness_folded_beyond_it_late_and_only_those(spec, events) -> None:
    out, late = _run_sources(spec, events)
    want, want_late = _recount(spec, events)
    assert [e[:4] for e in late] == want_late
    assert all(e[4] == LATE_OUT_OF_ORDER for e in late)
    _same(out, want)


def test_a_source_joining_a_shared_series_while_sources_are_discovered_is_not_late() -> None:
    """Two files of one series read one after the other (a backfill): the second joins within the
    discovery time, so the series waits for it instead of dropping its history."""
    spec = WindowSpec(10, 10, 0)
    agg = WindowAggregator(spec, discovery_ms=1_000)
    for t in range(0, 300, 5):
        assert agg.add("shared", t, 1.0, src="a", now_ms=t)
        agg.mark("a", t, t)
        assert list(agg.advance(t)) == []  # nothing closes while sources are being discovered
    for t in range(0, 300, 5):
        assert agg.add("shared", t, 1.0, src="b", now_ms=300 + t)
        agg.mark("b", t, 300 + t)
    got = {c.start_ms: c.agg.count for _, c in agg.advance(2_000)}
    assert got == {s: 4 for s in range(0, 290, 10)}  # [290, 300) waits for a later event
