"""Detector properties (hypothesis) and behaviour on synthetic series."""

from __future__ import annotations

import math
import random

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from logtide.detectors.base import decode, encode
from logtide.detectors.calibration import TailCalibrator, TailConfig

from logtide import detectors

UNIVARIATE = ["ewma", "robust", "seasonal", "cusum", "page_hinkley", "context", "ensemble"]
STEP = 300.0  # 5-minute points
DAY = 86400.0

finite = st.floats(min_value=-1e9, max_value=1e9, allow_nan=False, allow_infinity=False)
values = st.one_of(finite, st.just(math.nan), st.just(math.inf), st.just(0.0), st.just(1.0))


def feed(det: detectors.Detector, xs: list[float], t0: float = 1.7e9, step: float = STEP) -> list[float]:
    return [det.update(t0 + i * step, x).score for i, x in enumerate(xs)]


# --- properties ----------------------------------------------------------------------------------


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    name=st.sampled_from(UNIVARIATE),
    xs=st.lists(values, min_size=1, max_size=300),
    gaps=st.lists(st.floats(min_value=0.0, max_value=5e5), min_size=1, max_size=300),
)
def test_scores_in_unit_interval_never_nan(name: str, xs: list[float], gaps: list[float]) -> None:
    det = detectors.build(name, warmup=5)
    t = 1.6e9
    for i, x in enumerate(xs):
        t += gaps[i % len(gaps)]
        s = det.update(t, x)
        assert 0.0 <= s.score <= 1.0
        assert not math.isnan(s.score)


def _series(seed: int, n: int) -> list[float]:
    rng = random.Random(seed)
    out = []
    level = rng.uniform(-100, 100)
    scale = 10 ** rng.uniform(-3, 3)
    for i in range(n):
        x = level + scale * (math.sin(2 * math.pi * i * STEP / DAY) + rng.gauss(0, 0.3))
        if rng.random() < 0.01:
            x += scale * rng.uniform(-10, 10)
        if rng.random() < 0.005:
            x = math.nan
        out.append(x)
    return out


@settings(max_examples=20, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    name=st.sampled_from(UNIVARIATE),
    seed=st.integers(0, 10_000),
    n=st.integers(2, 700),
    cut=st.floats(0.0, 1.0),
)
def test_state_round_trip_mid_stream_gives_identical_scores(name: str, seed: int, n: int, cut: float) -> None:
    xs = _series(seed, n)
    k = int(cut * n)
    det = detectors.build(name, warmup=20)
    ref = feed(det, xs)
    det2 = detectors.build(name, warmup=20)
    head = feed(det2, xs[:k])
    blob = det2.to_bytes()
    det3 = detectors.from_bytes(blob)
    assert type(det3) is type(det2)
    tail = [det3.update(1.7e9 + (k + i) * STEP, x).score for i, x in enumerate(xs[k:])]
    assert head + tail == ref


@settings(max_examples=10, deadline=None)
@given(name=st.sampled_from(UNIVARIATE), seed=st.integers(0, 10_000))
def test_deterministic(name: str, seed: int) -> None:
    xs = _series(seed, 400)
    assert feed(detectors.build(name), xs) == feed(detectors.build(name), xs)


def test_isolation_round_trip_and_determinism() -> None:
    xs = _series(7, 900)
    ref = feed(detectors.build("isolation", reference=256, refit_every=128, warmup=128), xs)
    det = detectors.build("isolation", reference=256, refit_every=128, warmup=128)
    head = feed(det, xs[:500])
    det2 = detectors.from_bytes(det.to_bytes())
    tail = [det2.update(1.7e9 + (500 + i) * STEP, x).score for i, x in enumerate(xs[500:])]
    assert head + tail == ref
    assert all(0.0 <= s <= 1.0 for s in ref)


def test_isolation_multivariate_vectors() -> None:
    rng = random.Random(3)
    det = detectors.build("isolation", reference=256, refit_every=128, warmup=128)
    scores = []
    for i in range(600):
        count = 100 + rng.gauss(0, 5)
        err = 0.01 + abs(rng.gauss(0, 0.002))
        p99 = 200 + rng.gauss(0, 10)
        if i == 550:
            count, err, p99 = 100.0, 0.01, 900.0  # normal traffic, very slow
        scores.append(det.update(1.7e9 + i * 60, [count, err, p99]).score)
    # an isolation forest ranks a point beyond the training range with the most extreme training
    # points, not far above them: ask for the top 5 %, not the top
    later = sorted(scores[300:], reverse=True)
    assert scores[550] >= later[len(later) // 20]


@given(
    st.recursive(
        st.one_of(finite, st.integers(-(10**9), 10**9), st.text(max_size=5), st.just(math.inf)),
        lambda c: st.one_of(st.lists(c, max_size=6), st.dictionaries(st.text(max_size=3), c, max_size=4)),
        max_leaves=20,
    )
)
def test_codec_round_trip(obj: object) -> None:
    assert decode(encode(obj)) == obj


def test_registry_and_errors() -> None:
    assert detectors.DEFAULT in detectors.REGISTRY
    with pytest.raises(ValueError, match="unknown detector"):
        detectors.build("nope")
    det = detectors.build("ewma", {"alpha": 0.1})
    assert det.config.alpha == 0.1


# --- behaviour on synthetic series ----------------------------------------------------------------


def daily(n: int, seed: int = 0, noise: float = 1.0) -> list[float]:
    rng = random.Random(seed)
    return [50 + 20 * math.sin(2 * math.pi * i * STEP / DAY) + rng.gauss(0, noise) for i in range(n)]


N0 = 5 * 288  # five days of history before the event


def _alarm(det: detectors.Detector) -> float:
    return det.config.alarm


def _quiet_before(scores: list[float], det: detectors.Detector, warm: int = 600) -> bool:
    return max(scores[warm:N0]) < _alarm(det)


def _fires_after(scores: list[float], det: detectors.Detector, within: int) -> bool:
    return max(scores[N0 : N0 + within]) >= _alarm(det)


@pytest.mark.parametrize("name", ["ensemble", "seasonal"])
def test_normal_daily_cycle_does_not_alarm(name: str) -> None:
    det = detectors.build(name)
    scores = feed(det, daily(10 * 288, seed=1))
    assert max(scores[2 * 288 :]) < _alarm(det)


@pytest.mark.parametrize(
    ("name", "cycle"), [("ensemble", 20.0), ("seasonal", 20.0), ("ewma", 0.0), ("robust", 0.0)]
)
def test_spike(name: str, cycle: float) -> None:
    xs = [
        x + (cycle - 20.0) * math.sin(2 * math.pi * i * STEP / DAY) for i, x in enumerate(daily(N0 + 200, 2))
    ]
    xs[N0] += 15.0
    det = detectors.build(name)
    scores = feed(det, xs)
    assert _fires_after(scores, det, 1)
    assert scores[N0] == max(scores[600:])


@pytest.mark.parametrize(("name", "cycle"), [("ensemble", 20.0), ("seasonal", 20.0), ("cusum", 0.0),
                                            ("page_hinkley", 0.0)])
def test_level_shift(name: str, cycle: float) -> None:
    xs = [x + (cycle - 20.0) * math.sin(2 * math.pi * i * STEP / DAY) for i, x in enumerate(daily(N0 + 300, 3))]
    for i in range(N0, len(xs)):
        xs[i] += 8.0
    det = detectors.build(name)
    scores = feed(det, xs)
    assert _fires_after(scores, det, 50)


@pytest.mark.parametrize("name", ["ensemble"])
def test_variance_change(name: str) -> None:
    rng = random.Random(4)
    xs = daily(N0 + 300, seed=4)
    for i in range(N0, len(xs)):
        xs[i] += rng.gauss(0, 6.0)
    det = detectors.build(name)
    scores = feed(det, xs)
    assert _quiet_before(scores, det)
    assert _fires_after(scores, det, 100)


@pytest.mark.parametrize("name", ["ensemble"])
def test_flatline_after_activity(name: str) -> None:
    rng = random.Random(5)
    xs = [100 + rng.gauss(0, 10) for _ in range(N0)] + [100.0] * 400
    det = detectors.build(name)
    scores = feed(det, xs)
    assert _quiet_before(scores, det)
    assert _fires_after(scores, det, 200)


@pytest.mark.parametrize("seed", range(5))
def test_a_second_burst_pages_again(seed: int) -> None:
    # one burst of +30 sd for ten points, then the same burst again 800 points later: the first burst
    # must not widen the learned tail so much that the second one stays below the paging level
    rng = random.Random(seed)
    xs = [100 + rng.gauss(0, 1) for _ in range(2000)]
    for start in (700, 1500):
        for i in range(start, start + 10):
            xs[i] += 30
    det = detectors.build()
    scores = feed(det, xs)
    assert max(scores[700:710]) >= det.config.alarm
    assert max(scores[1500:1510]) >= det.config.alarm


def test_tail_fit_is_robust_to_a_burst_of_extreme_statistics() -> None:
    """Ten statistics 40 sd out among 4000 Gaussian ones: the fitted tail stays light (each excess is
    winsorised at ``excess_clip`` times the mean excess); unclipped, the burst makes a 6-sd statistic
    fifty times more probable."""

    def fitted(clip: float) -> TailCalibrator:
        cal = TailCalibrator(TailConfig(excess_clip=clip))
        rng = random.Random(1)
        for i in range(4000):
            cal.learn(40.0 if 1000 <= i < 1010 else abs(rng.gauss(0, 1)))
        return cal

    clipped, unclipped = fitted(TailConfig.excess_clip), fitted(0.0)
    assert clipped.tail(6.0) < 1e-3 < unclipped.tail(6.0)
    assert clipped.tail(6.0) * 20 < unclipped.tail(6.0)
    assert clipped._xi < unclipped._xi


@pytest.mark.parametrize(("name", "config"), [("page_hinkley", {}), ("cusum", {})])
def test_slow_drift(name: str, config: dict) -> None:
    rng = random.Random(6)
    xs = [10 + rng.gauss(0, 1) for _ in range(N0)]
    xs += [10 + 0.02 * k + rng.gauss(0, 1) for k in range(600)]  # +12 sd over two days
    det = detectors.build(name, config)
    scores = feed(det, xs)
    assert _quiet_before(scores, det)
    assert _fires_after(scores, det, 600)


def test_constant_and_near_constant_series() -> None:
    for name in UNIVARIATE:
        det = detectors.build(name)
        scores = feed(det, [5.0] * 500 + [5.0 + 1e-12 * (i % 2) for i in range(500)])
        assert all(0.0 <= s <= 1.0 for s in scores)
        assert max(scores) < 1.0 or name in ("cusum", "page_hinkley")


def test_nan_and_gaps_do_not_break_state() -> None:
    det = detectors.build()
    xs = daily(3 * 288, seed=8)
    for i in range(0, len(xs), 37):
        xs[i] = math.nan
    scores = []
    t = 1.7e9
    for i, x in enumerate(xs):
        t += STEP if i % 100 else 3 * DAY  # gaps of three days now and then
        s = det.update(t, x)
        scores.append(s.score)
        if math.isnan(x):
            assert s.score == 0.0
    assert all(0.0 <= s <= 1.0 for s in scores)
    # after NaNs and three-day gaps the forecast is still a number within the data's range, inside its band
    s = det.update(t + STEP, 50.0)
    seen = [v for v in xs if math.isfinite(v)]
    assert math.isfinite(s.expected) and min(seen) <= s.expected <= max(seen)
    assert s.lower <= s.expected <= s.upper


def test_no_alarm_during_warmup() -> None:
    det = detectors.build()
    xs = [0.0, 1e6, -1e6, 3.0] * 40
    assert max(feed(det, xs)[: det.config.warmup]) == 0.0


def test_score_carries_expected_band() -> None:
    det = detectors.build()
    xs = daily(3 * 288, seed=9)
    s = None
    for i, x in enumerate(xs):
        s = det.update(1.7e9 + i * STEP, x)
    assert s is not None
    assert s.lower <= s.expected <= s.upper
    assert abs(s.expected - xs[-1]) < 10


# --- the contract, the inlined path, bands ---------------------------------------------------------


@pytest.mark.parametrize("name", UNIVARIATE)
def test_update_returns_a_new_immutable_score(name: str) -> None:
    det = detectors.build(name, warmup=5)
    xs = _series(3, 60)
    kept = [det.update(1.7e9 + i * STEP, x) for i, x in enumerate(xs)]
    assert len({id(s) for s in kept}) == len(kept)  # a new object each time, none overwritten later
    assert kept == [det2 for det2 in (detectors.build(name, warmup=5),) for det2 in [
        det2.update(1.7e9 + i * STEP, x) for i, x in enumerate(xs)]]
    with pytest.raises(AttributeError):
        kept[-1].score = 0.5  # type: ignore[misc]


ENSEMBLE_VARIANTS = [
    {},
    {"tests": ["point"]},
    {"tests": ["point", "level", "spread", "shift"]},
    {"tests": ["level", "spread"]},
    {"tests": ["point", "spread"], "periods": [], "refractory": 0},
    {"tests": ["point", "level", "spread", "context"], "ctx_memory": 300},
]


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    variant=st.sampled_from(ENSEMBLE_VARIANTS),
    seed=st.integers(0, 10_000),
    n=st.integers(1, 900),
    repeats=st.floats(0.0, 0.5),
    xs=st.lists(values, max_size=60),
)
def test_ensemble_inlined_update_equals_its_reference(variant: dict, seed: int, n: int, repeats: float,
                                                      xs: list[float]) -> None:
    """``update`` copies the methods it inlines: same scores, bands and state as the reference path, bit
    for bit, on random series (spikes, repeats, NaN, extreme values, all tests on and off)."""
    rng = random.Random(seed)
    series = _series(seed, n)
    for i in range(len(series)):  # runs of repeated values (flatline and resolution paths)
        if i and rng.random() < repeats:
            series[i] = series[i - 1]
    series += xs
    fast = detectors.build("ensemble", {**variant, "warmup": 20})
    ref = detectors.build("ensemble", {**variant, "warmup": 20})
    for i, x in enumerate(series):
        t = 1.7e9 + i * STEP
        a, b = fast.update(t, x), ref._update_reference(t, x)
        assert repr(a) == repr(b), (i, a, b)  # repr: NaN equals NaN
    assert fast.to_bytes() == ref.to_bytes()


@pytest.mark.parametrize("name", ["ensemble", "seasonal", "ewma", "robust"])
def test_bands_respect_the_domain_seen(name: str) -> None:
    rng = random.Random(4)
    # an error ratio: mostly near 0, within [0, 1]
    ratio = [min(1.0, max(0.0, rng.gauss(0.02, 0.02))) for _ in range(2000)]
    det = detectors.build(name)
    for i, x in enumerate(ratio):
        s = det.update(1.7e9 + i * 60, x)
        if i > 0:
            assert 0.0 <= s.lower <= s.expected <= s.upper <= 1.0
    # a count, never negative, that sits at zero most of the time
    det = detectors.build(name)
    for i in range(2000):
        s = det.update(1.7e9 + i * 60, float(rng.random() < 0.05))
        assert s.lower >= 0.0
    # a series that goes negative gets negative bounds
    det = detectors.build(name)
    for i in range(500):
        s = det.update(1.7e9 + i * 60, rng.gauss(0.0, 1.0))
    assert s.lower < 0.0 < s.upper


@pytest.mark.parametrize("name", ["ensemble", "seasonal", "ewma", "robust"])
def test_bands_are_never_narrower_than_the_data_resolution(name: str) -> None:
    # nearly constant, moving in steps of 1e-4 now and then: the band is at least one step wide
    det = detectors.build(name)
    s = None
    for i in range(1500):
        x = 0.0192064 + (1e-4 if i % 97 == 0 else 0.0)
        s = det.update(1.7e9 + i * 60, x)
    assert s is not None
    assert s.upper - s.expected >= 1e-4 and s.expected - s.lower >= 1e-4
    # never moved at all: the minimum meaningful change (1 % of the level) still gives a width
    det = detectors.build(name)
    for i in range(500):
        s = det.update(1.7e9 + i * 60, 0.0192064)
    assert s.upper - s.lower >= 0.01 * 0.0192064


def test_context_detector_flags_a_pattern_never_seen() -> None:
    # a square wave between two levels; then a value between them, in a sequence never seen
    det = detectors.build("context")
    xs = [10.0 if (i // 20) % 2 else 0.0 for i in range(2000)]
    scores = feed(det, xs)
    assert max(scores[600:]) < 0.3
    tail = feed(det, [5.0, 5.0, 10.0], t0=1.7e9 + 2000 * STEP)
    assert max(tail) >= 0.3  # the flag level; the ensemble, which combines it, pages


def test_context_state_round_trip_across_generations() -> None:
    """Restored at any point, even after many forgotten generations (the generation counter wraps at
    255), the context model gives the same later scores."""
    xs = _series(11, 16000)
    for name, cfg in (("context", {"memory": 50, "warmup": 20, "range_points": 20}),
                      ("ensemble", {"ctx_memory": 50, "warmup": 20})):
        ref = feed(detectors.build(name, cfg), xs)
        for cut in (100, 5077, 12801, 15999):
            det = detectors.build(name, cfg)
            head = feed(det, xs[:cut])
            det2 = detectors.from_bytes(det.to_bytes())
            tail = feed(det2, xs[cut:], t0=1.7e9 + cut * STEP)
            assert head + tail == ref, (name, cut)
