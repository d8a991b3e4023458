"""Fuzzing every decoder: no exception escapes, rejected input becomes a dead letter or a clear
error, memory stays bounded. The test suite runs a small budget; `bench/fuzz.py` runs a million."""

from __future__ import annotations

import tracemalloc
import zlib

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from logtide.schemas import DeadLetter, LogEvent, decode
from logtide.shippers.config import MultilineConfig
from logtide.shippers.line_reader import LineReader
from logtide.shippers.multiline import MultilineAggregator

from tests.security.fuzz_targets import TARGETS, campaign

FAST = settings(max_examples=150, deadline=None, suppress_health_check=list(HealthCheck), derandomize=True)


@pytest.mark.parametrize("name", sorted(TARGETS))
@FAST
@given(data=st.binary(max_size=2048))
def test_random_bytes_break_no_contract(name: str, data: bytes) -> None:
    TARGETS[name](data)


@pytest.mark.parametrize("name", sorted(TARGETS))
def test_mutated_real_inputs_break_no_contract(name: str) -> None:
    result = campaign([name], per_target=400, seed=zlib.crc32(name.encode()))
    assert result["tried"] == 400
    assert result["failures"] == {}, result["failures"]


def test_a_100_mb_line_is_cut_not_held() -> None:
    reader = LineReader(max_line_bytes=1 << 20, long_lines="truncate")
    chunk = b"x" * (4 << 20)
    tracemalloc.start()
    lines = []
    offset = 0
    for _ in range(25):  # 100 MiB without a newline, fed as a harvester reads it
        lines += reader.feed(chunk, offset)
        offset += len(chunk)
        assert reader.pending_bytes <= (1 << 20) + len(chunk)
    lines += reader.feed(b"\n", offset)
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    assert peak < 64 << 20  # never the whole line in memory
    assert lines and all(len(raw) <= 1 << 20 for _s, _e, raw, _t in lines)
    assert any(truncated for *_x, truncated in lines)


def test_deep_json_is_a_dead_letter() -> None:
    raw = b"[" * 10_000 + b"]" * 10_000
    got = decode(raw, LogEvent)
    assert isinstance(got, DeadLetter) and got.error.type


def test_multiline_continuation_bomb_is_capped() -> None:
    cfg = MultilineConfig(mode="continuation", pattern=r"^\s", max_lines=500, max_bytes=256 << 10)
    agg = MultilineAggregator(cfg)
    pos = 0
    agg.push("Exception: the head line", 0, 25)
    line = " continuation " + "y" * 200
    for _ in range(200_000):  # 43 MB of continuation lines that never end
        assert agg.push(line, pos, pos + len(line) + 1) is None
        pos += len(line) + 1
    ev = agg.flush()
    assert ev is not None and "truncated" in ev.flags
    assert len(ev.text.encode()) <= 256 << 10 and len(ev.lines) <= 500


@pytest.mark.parametrize("raw", ["1e999", "9" * 400, "-1e999", "nan", "17/06/09 20:55" + "9" * 300])
def test_found_by_fuzzing_timestamps_that_hung_or_raised(raw: str) -> None:
    """An infinite epoch looped forever (inf / 1000 stays inf); dateutil raised decimal errors."""
    from logtide.shippers.parsers.timestamps import TimestampParser

    assert TimestampParser(["auto"]).parse(raw) is None


def test_found_by_fuzzing_epoch_past_the_c_range() -> None:
    from logtide.shippers.parsers.timestamps import TimestampParser

    assert TimestampParser(["unix"]).parse("202626262626262626") is None  # OSError escaped before


def test_found_by_fuzzing_config_integer_of_20000_digits() -> None:
    from logtide.config import ConfigError, parse_config_text

    with pytest.raises(ConfigError, match="not readable"):
        parse_config_text("shipper:\n  inputs:\n    - parser: " + "9" * 20_000 + "\n")


@pytest.mark.parametrize("body", [
    '# TYPE h histogram\nh_bucket{le="1"}' + "9" * 400 + "\n",
    '# TYPE \x1d\rcSJ\x9ah histogram\nh_bucket{le="1"le=} 2\n',
])
def test_found_by_fuzzing_scrape_bodies_are_malformed_not_crashes(body: str) -> None:
    """prometheus-client's parser raised IndexError and OverflowError on these."""
    from logtide.shippers.prometheus_scrape import samples_from_text

    with pytest.raises(ValueError, match=r"malformed|could not|Invalid|invalid"):  # reported and counted by the scrape
        samples_from_text(body, 1_700_000_000_000, {"job": "fuzz"})


@pytest.mark.parametrize(("section", "where"), [
    ("route:\n    receiver: default\n    group_wait: " + "9" * 400, "group_wait"),
    ("route:\n    receiver: default\n    routes:\n      - matchers: ['a=~\"" + "(" * 3000 + ")" * 3000 + "\"']",
     "matchers"),
])
def test_found_by_fuzzing_alert_config_that_escaped_as_other_exceptions(section: str, where: str) -> None:
    """An integer duration of 400 digits escaped as OverflowError, a regex matcher nested 3000 deep as
    RecursionError; both are now configuration errors that name the key."""
    from logtide.config import ConfigError, parse_config_text

    with pytest.raises(ConfigError) as exc:
        parse_config_text("alerts:\n  " + section + "\n", "alerts.yaml", env={})
    assert any(where in p for p in exc.value.problems), exc.value.problems
