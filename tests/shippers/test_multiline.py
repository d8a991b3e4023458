"""Multiline grouping: Java stack traces, Python tracebacks, continuation mode, caps."""

from __future__ import annotations

from logtide.shippers.config import MultilineConfig
from logtide.shippers.multiline import MultilineAggregator

JAVA = """2024-05-01 10:00:00,123 ERROR [main] c.e.App - request failed
java.lang.IllegalStateException: boom
\tat com.example.App.handle(App.java:42)
\tat com.example.App.main(App.java:10)
Caused by: java.io.IOException: disk
\t... 2 more
2024-05-01 10:00:01,000 INFO [main] c.e.App - next""".splitlines()

PY = """2024-05-01 10:00:00 ERROR worker crashed
Traceback (most recent call last):
  File "/app/w.py", line 3, in <module>
    run()
ValueError: bad input
2024-05-01 10:00:02 INFO restarted""".splitlines()


def _feed(agg: MultilineAggregator, lines: list[str]) -> list[str]:
    out, off = [], 0
    for line in lines:
        ev = agg.push(line, off, off + len(line) + 1)
        off += len(line) + 1
        if ev:
            out.append(ev.text)
    last = agg.flush()
    if last:
        out.append(last.text)
    return out


def test_java_stack_trace_start_mode() -> None:
    agg = MultilineAggregator(MultilineConfig(mode="start", pattern=r"^\d{4}-\d{2}-\d{2} "))
    events = _feed(agg, JAVA)
    assert len(events) == 2
    assert events[0].startswith("2024-05-01 10:00:00,123 ERROR") and events[0].endswith("\t... 2 more")
    assert events[0].count("\n") == 5


def test_python_traceback_continuation_mode() -> None:
    agg = MultilineAggregator(
        MultilineConfig(mode="continuation", pattern=r"^(\s|Traceback|\w+(Error|Exception)\b)")
    )
    events = _feed(agg, PY)
    assert events == ["\n".join(PY[:5]), PY[5]]


def test_offsets_span_the_event() -> None:
    agg = MultilineAggregator(MultilineConfig(pattern=r"^\S"))
    assert agg.push("a", 0, 2) is None
    assert agg.push("  b", 2, 6) is None
    ev = agg.push("c", 6, 8)
    assert ev is not None and (ev.start, ev.end) == (0, 6)
    assert agg.pending_start == 6


def test_caps_bound_the_event_and_flag_it() -> None:
    agg = MultilineAggregator(MultilineConfig(pattern=r"^\S", max_lines=3, max_bytes=1024))
    agg.push("head", 0, 5)
    for i in range(100):
        agg.push(f"  cont {i}", 5 + i * 10, 15 + i * 10)
    ev = agg.flush()
    assert ev is not None and len(ev.lines) == 3 and "truncated" in ev.flags
    assert ev.end == 1005


def test_negate() -> None:
    agg = MultilineAggregator(MultilineConfig(mode="start", pattern=r"^\s", negate=True))
    assert _feed(agg, ["a", " b", "c"]) == ["a\n b", "c"]
