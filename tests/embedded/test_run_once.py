"""`logtide run --once`: one enriched event per line, exact window counts, bad input never crashes,
and a second run carries on where the first stopped."""

from __future__ import annotations

import subprocess
import sys
from collections import Counter
from datetime import UTC, datetime, timedelta
from pathlib import Path

import orjson
from click.testing import CliRunner

from logtide.cli import main
from tests.embedded.helpers import read_ndjson, run_once, write_config

SAMPLE = Path(__file__).resolve().parents[1] / "data" / "logs" / "access" / "apache_combined_2k.log"


def test_real_access_log_one_event_per_line(tmp_path: Path) -> None:
    res = CliRunner().invoke(main, ["run", "--path", str(SAMPLE), "--parser", "access_log",
                                    "--data-dir", str(tmp_path), "--once"])  # fmt: skip
    assert res.exit_code == 0, res.output
    assert "processed 2000 events" in res.output
    lines = SAMPLE.read_bytes().splitlines(keepends=True)
    offsets, pos = [], 0
    for line in lines:
        offsets.append(pos)
        pos += len(line)
    events = read_ndjson(tmp_path / "enriched.ndjson")
    assert len(events) == len(lines) == 2000
    assert [e["log"]["offset"] for e in events] == offsets
    assert len({e["event"]["id"] for e in events}) == 2000
    assert all(e["logtide"]["flags"] == [] or e["logtide"]["flags"] == ["clock_skew"] for e in events)
    assert events[0]["http"]["response"]["status_code"] == 200
    assert events[0]["attributes"]["http.status_class"] == "2xx"


def _line(ts: str, level: str, msg: str = "m", service: str = "svc") -> bytes:
    return orjson.dumps({"ts": ts, "level": level, "msg": msg, "service_name": service}) + b"\n"


def _json_input(path: Path) -> dict:
    return {"paths": [str(path)], "parser": {"type": "json"}, "service": {"name": "svc"}}


def test_exact_aggregates_per_window(tmp_path: Path) -> None:
    log = tmp_path / "app.log"
    rows = [
        ("2026-01-01T10:00:05Z", "info"), ("2026-01-01T10:00:15Z", "info"), ("2026-01-01T10:00:59.999Z", "error"),
        ("2026-01-01T10:01:00Z", "info"), ("2026-01-01T10:01:30Z", "warn"),
        ("2026-01-01T10:03:10Z", "error"),
    ]  # fmt: skip
    log.write_bytes(b"".join(_line(t, lv) for t, lv in rows))
    cfg = write_config(tmp_path / "c.yaml", [_json_input(log)])
    s = run_once(cfg, tmp_path / "out")
    assert (s.events, s.dead_letters, s.anomalies) == (6, 0, 0)
    aggs = read_ndjson(tmp_path / "out" / "aggregates.ndjson")
    got = {
        (a["series"]["key"], a["window"]["start"][11:16]): (a["stats"]["count"], a["stats"]["mean"])
        for a in aggs
    }
    assert len(got) == len(aggs)  # each window emitted once
    ratio = "log.error_ratio{service=svc}"
    assert got[(ratio, "10:00")] == (3, 1 / 3)
    assert got[(ratio, "10:01")] == (2, 0.0)
    assert got[(ratio, "10:03")] == (1, 1.0)
    assert (ratio, "10:02") not in got  # no data, no window
    counts = {k: v[0] for k, v in got.items() if k[0].startswith("log.events") and v[0]}
    assert counts == {
        ("log.events{level=info,service=svc}", "10:00"): 2,
        ("log.events{level=error,service=svc}", "10:00"): 1,
        ("log.events{level=info,service=svc}", "10:01"): 1,
        ("log.events{level=warning,service=svc}", "10:01"): 1,
        ("log.events{level=error,service=svc}", "10:03"): 1,
    }
    # counts of a series that is alive (its file goes on) are zero-filled up to the file's watermark
    zeros = {k for k, v in got.items() if k[0].startswith("log.events") and not v[0]}
    assert zeros == {
        ("log.events{level=error,service=svc}", "10:01"),
        ("log.events{level=error,service=svc}", "10:02"),
        ("log.events{level=info,service=svc}", "10:02"),
        ("log.events{level=warning,service=svc}", "10:02"),
    }
    assert all(a["window"]["size_seconds"] == 60 for a in aggs)


def test_bad_lines_are_flagged_or_dead_lettered(tmp_path: Path) -> None:
    log = tmp_path / "bad.log"
    log.write_bytes(
        _line("2026-01-01T10:05:00Z", "info")
        + b'{"ts": "2026-01-01T10:05:01Z", "level": "info", "msg": "unterminated\n'  # invalid JSON
        + b'{"ts": "2026-01-01T10:05:02Z", "msg": "caf\xe9 latin-1"}\n'  # invalid UTF-8
        + b"\x01 garbage \xff\xfe not json\n"  # (a NUL byte near the head would make the shipper skip the file)
        + _line("2026-01-01T10:07:00Z", "info")
        + _line("2026-01-01T10:01:00Z", "info")  # behind every open window of its series: late
    )
    cfg = write_config(tmp_path / "c.yaml", [_json_input(log)])
    s = run_once(cfg, tmp_path / "out")
    events = read_ndjson(tmp_path / "out" / "enriched.ndjson")
    assert len(events) == s.events == 6
    flags = [e["logtide"]["flags"] for e in events]
    assert "parse_failure" in flags[1]
    assert "invalid_utf8" in flags[2]
    assert "parse_failure" in flags[3]
    assert s.flagged == 3
    assert events[1]["event"]["original"].startswith('{"ts"')
    dead = read_ndjson(tmp_path / "out" / "deadletter.ndjson")
    assert dead and {d["error"]["type"] for d in dead} == {"late_event"}
    # the summary counts events (one line late), the dead letters are per derived point, with the reason
    assert s.late == 1 and s.late_points == len(dead) == 2
    assert all(d["error"]["message"].startswith("source_out_of_order") for d in dead)


def test_second_run_carries_on(tmp_path: Path) -> None:
    log = tmp_path / "app.log"
    log.write_bytes(b"".join(_line(f"2026-01-01T10:00:{i:02d}Z", "info") for i in range(30)))
    cfg = write_config(tmp_path / "c.yaml", [_json_input(log)])
    out = tmp_path / "out"
    assert run_once(cfg, out).events == 30
    with log.open("ab") as f:
        f.write(b"".join(_line(f"2026-01-01T10:00:{i:02d}Z", "info") for i in range(30, 60)))
        f.write(_line("2026-01-01T10:01:00Z", "info"))
    s = run_once(cfg, out)
    assert s.events == 31 and s.restored_series > 0 and s.late == 0
    events = read_ndjson(out / "enriched.ndjson")
    assert len(events) == 61 == len({e["event"]["id"] for e in events})
    # the window closed by the first run's end of input is emitted again, completed, with the same id
    aggs = [
        a
        for a in read_ndjson(out / "aggregates.ndjson")
        if a["series"]["key"] == "log.error_ratio{service=svc}"
    ]
    by_id = Counter(a["event"]["id"] for a in aggs)
    last = {a["event"]["id"]: a for a in aggs}
    assert sorted(a["stats"]["count"] for a in last.values()) == [1, 60]
    assert max(by_id.values()) == 2


def test_clickhouse_option(tmp_path: Path) -> None:
    log = tmp_path / "app.log"
    t0 = datetime.now(UTC).replace(second=0, microsecond=0) - timedelta(hours=1)  # inside the tables' TTL
    log.write_bytes(b"".join(_line((t0 + timedelta(seconds=i)).isoformat(), "info") for i in range(10)))
    cfg = write_config(tmp_path / "c.yaml", [_json_input(log)])
    res = CliRunner().invoke(main, ["run", "--config", str(cfg), "--data-dir", str(tmp_path / "out"),
                                    "--once", "--clickhouse"])  # fmt: skip
    assert res.exit_code == 0, res.output
    # read back in a fresh process (one chdb session per process)
    script = (
        "import sys; from sinks.clickhouse_sink import ChdbBackend; b = ChdbBackend(sys.argv[1]); "
        "print(b.query_rows('SELECT count() AS n FROM logtide.logs FINAL')[0]['n'], "
        "b.query_rows('SELECT count() AS n FROM logtide.metrics_agg FINAL')[0]['n'])"
    )
    out = subprocess.run([sys.executable, "-c", script, str(tmp_path / "out" / "clickhouse")],
                         capture_output=True, text=True, timeout=120, check=True)  # fmt: skip
    logs, aggs = (int(x) for x in out.stdout.split())
    assert logs == 10
    assert aggs == len(read_ndjson(tmp_path / "out" / "aggregates.ndjson")) > 0


def test_changed_window_settings_start_windows_afresh_but_keep_offsets(tmp_path: Path) -> None:
    log = tmp_path / "app.log"
    log.write_bytes(b"".join(_line(f"2026-01-01T10:00:{i:02d}Z", "info") for i in range(20)))
    out = tmp_path / "out"
    assert run_once(write_config(tmp_path / "a.yaml", [_json_input(log)]), out).events == 20
    with log.open("ab") as f:
        f.write(_line("2026-01-01T10:00:30Z", "info"))
    changed = write_config(
        tmp_path / "b.yaml",
        [_json_input(log)],
        {"window": {"size_seconds": 120, "lateness_seconds": 0, "group_by": ["service"]}},
    )
    s = run_once(changed, out)
    assert s.events == 1 and s.restored_series == 0


def test_one_runner_per_data_dir(tmp_path: Path) -> None:
    import fcntl
    import os

    out = tmp_path / "out"
    out.mkdir()
    fd = os.open(out / ".lock", os.O_RDWR | os.O_CREAT)
    fcntl.flock(fd, fcntl.LOCK_EX)
    try:
        res = CliRunner().invoke(main, ["run", "--path", str(SAMPLE), "--data-dir", str(out), "--once"])
        assert res.exit_code == 1 and "in use" in res.output
    finally:
        os.close(fd)


def test_history_with_default_settings_is_windowed_and_a_rerun_emits_nothing_again(tmp_path: Path) -> None:
    """A real access log from years ago, default configuration: history is judged against its own
    timeline, not the wall clock, so it lands in windows; running `--once` again with no new input
    appends no aggregate."""
    out = tmp_path / "out"
    args = ["run", "--path", str(SAMPLE), "--parser", "access_log", "--data-dir", str(out), "--once"]
    res = CliRunner().invoke(main, args)
    assert res.exit_code == 0, res.output
    assert "processed 2000 events" in res.output and "kept out" not in res.output
    aggs = read_ndjson(out / "aggregates.ndjson")
    counted = sum(a["stats"]["count"] for a in aggs if a["series"]["metric"] == "log.error_ratio")
    late = sum(1 for d in read_ndjson(out / "deadletter.ndjson") if d["error"]["type"] == "late_event")
    assert aggs and counted > 0
    assert len({a["event"]["id"] for a in aggs}) == len(aggs)  # each window once
    assert late == 0 and "(0 events late)" in res.output
    again = CliRunner().invoke(main, args)
    assert again.exit_code == 0, again.output
    assert "processed 0 events" in again.output and " 0 aggregates" in again.output
    assert len(read_ndjson(out / "aggregates.ndjson")) == len(aggs)


def test_files_at_different_densities_lose_nothing(tmp_path: Path) -> None:
    """Three services over the same 40 minutes at 20, 4 and 0.5 lines/s, read at once with the default
    window settings: every line is in a closed window, none is late."""
    t0 = datetime(2026, 3, 1, 9, 0, tzinfo=UTC)
    inputs, n = [], 0
    for name, per_s in (("checkout", 20), ("search", 4), ("auth", 0.5)):
        path = tmp_path / f"{name}.log"
        step = 1 / per_s
        k = int(40 * 60 * per_s)
        path.write_bytes(b"".join(_line((t0 + timedelta(seconds=i * step)).isoformat(), "info", service=name)
                                  for i in range(k)))  # fmt: skip
        n += k
        inputs.append({"paths": [str(path)], "parser": {"type": "json"}, "service": {"name": name}})
    cfg = tmp_path / "c.yaml"
    import yaml

    cfg.write_text(yaml.safe_dump({"logging": {"level": "WARNING"}, "shipper": {
        "host_name": "h", "inputs": [{"start_position": "beginning", **i} for i in inputs]}}))
    s = run_once(cfg, tmp_path / "out")
    aggs = read_ndjson(tmp_path / "out" / "aggregates.ndjson")
    in_windows = sum(a["stats"]["count"] for a in aggs if a["series"]["metric"] == "log.events")
    assert (s.events, s.late, in_windows) == (n, 0, n)
