"""Every parser on real log lines (Apache/nginx combined, syslog from loghub, HDFS, Apache error log),
checked against loghub's ground truth where it exists, and the events validated against LogEvent."""

from __future__ import annotations

import orjson
import pytest
from logtide.schemas import stable_id
from logtide.shippers.config import LogInputConfig, ParserConfig
from logtide.shippers.events import IdHasher, LogEventBuilder, host_block
from logtide.shippers.parsers import ParseError, make_parser
from logtide.shippers.parsers.logfmt import parse_pairs
from logtide.shippers.parsers.severity import normalize_severity
from logtide.shippers.parsers.syslog import parse_syslog
from logtide.shippers.parsers.timestamps import TimestampParser

from tests.shippers.helpers import ACCESS, LOGHUB, lines, structured, validate_event

HOST = host_block("test-host")


def _builder(ptype: str, **kw) -> LogEventBuilder:  # type: ignore[no-untyped-def]
    return LogEventBuilder(LogInputConfig(paths=["/x"], parser=ParserConfig(type=ptype, **kw)), HOST)


def _event(b: LogEventBuilder, text: str, offset: int = 0) -> dict:
    raw, _failed = b.build(text, offset, [], {"path": "/x"}, "id", "2026-01-01T00:00:00+00:00")
    validate_event(raw)
    return orjson.loads(raw)


def test_access_log_all_real_lines() -> None:
    b = _builder("access_log")
    rows = lines(ACCESS)
    assert len(rows) == 2000
    for line in rows:
        ev = _event(b, line)
        assert "parse_failure" not in ev["logtide"]["flags"], line
        assert ev["message"] == line
        assert ev["@timestamp"].startswith("2015-05-")
        assert ev["http"]["response"]["status_code"] in range(100, 600)
    ev = _event(b, rows[0])
    assert ev["source"]["ip"] == "83.149.9.216"
    assert ev["http"]["request"]["method"] == "GET"
    assert ev["url"]["original"] == "/presentations/logstash-monitorama-2013/images/kibana-search.png"
    assert ev["http"]["response"]["body"]["bytes"] == 203023
    assert ev["user_agent"]["original"].startswith("Mozilla/5.0 (Macintosh")
    assert ev["@timestamp"] == "2015-05-17T10:05:03.000000+00:00"
    assert ev["log"]["level"] == "info"


def test_nginx_combined_lines() -> None:
    b = _builder("access_log")
    nginx = [
        '192.168.1.20 - - [10/Oct/2023:13:55:36 +0200] "GET /api/v1/items?id=7 HTTP/2.0" 502 157 "-" '
        '"curl/8.4.0"',
        '2001:db8::1 - alice [10/Oct/2023:13:55:37 +0000] "POST /login HTTP/1.1" 401 0 "https://a.example/" '
        '"Mozilla/5.0" "-"',
        '10.0.0.1 - - [10/Oct/2023:13:55:38 +0000] "\\x16\\x03\\x01" 400 166 "-" "-"',
    ]
    e0, e1, e2 = (_event(b, x) for x in nginx)
    assert e0["log"]["level"] == "error" and e0["@timestamp"] == "2023-10-10T11:55:36.000000+00:00"
    assert e1["user"]["name"] == "alice" and e1["source"]["ip"] == "2001:db8::1"
    assert e1["http"]["request"]["referrer"] == "https://a.example/"
    assert e2["http"]["response"]["status_code"] == 400 and "parse_failure" not in e2["logtide"]["flags"]


def test_syslog_linux_against_ground_truth() -> None:
    truth = structured("Linux")
    raw = lines(LOGHUB / "Linux_2k.log")
    assert len(raw) == len(truth) == 2000
    for line, row in zip(raw, truth, strict=True):
        p = parse_syslog(line)
        assert p["ecs"]["process"]["name"] == row["Component"], line
        if row["PID"]:
            assert p["ecs"]["process"]["pid"] == int(row["PID"])
        assert p["message"].strip() == row["Content"].strip()
        assert p["attributes"]["syslog"]["hostname"] == row["Level"]  # loghub names the host column "Level"


def test_syslog_openssh_against_ground_truth() -> None:
    truth = structured("OpenSSH")
    b = _builder("syslog")
    for line, row in zip(lines(LOGHUB / "OpenSSH_2k.log"), truth, strict=True):
        ev = _event(b, line)
        assert ev["process"] == {"name": "sshd", "pid": int(row["Pid"])}
        assert ev["attributes"]["syslog"]["hostname"] == row["Component"]  # loghub's name for the host
        assert ev["message"].strip() == row["Content"].strip()
        month_day = f"-{int(row['Day']):02d}T{row['Time']}"
        assert month_day in ev["@timestamp"]


def test_syslog_rfc5424() -> None:
    line = (
        "<165>1 2003-10-11T22:14:15.003Z mymachine.example.com evntslog 4123 ID47 "
        '[exampleSDID@32473 iut="3" eventSource="Application" eventID="1011"][x@1 a="b\\"c"] '
        "\ufeffAn application event log entry"
    )
    ev = _event(_builder("syslog"), line)
    assert ev["message"] == "An application event log entry"
    assert ev["@timestamp"] == "2003-10-11T22:14:15.003000+00:00"
    sl = ev["attributes"]["syslog"]
    assert sl["facility"] == {"code": 20, "name": "local4"} and sl["severity"]["name"] == "notice"
    assert sl["structured_data"]["exampleSDID@32473"]["eventID"] == "1011"
    assert sl["structured_data"]["x@1"]["a"] == 'b"c'
    assert ev["process"] == {"name": "evntslog", "pid": 4123}
    assert ev["log"]["level"] == "notice"
    nil = _event(_builder("syslog"), "<34>1 - - - - - -")
    assert nil["log"]["level"] == "critical" and "ts_missing" in nil["logtide"]["flags"]


def test_syslog_rfc3164_with_pri() -> None:
    ev = _event(
        _builder("syslog"), "<34>Oct 11 22:14:15 mymachine su: 'su root' failed for lonvick on /dev/pts/8"
    )
    assert ev["log"]["level"] == "critical" and ev["process"]["name"] == "su"
    assert ev["attributes"]["syslog"]["hostname"] == "mymachine"


def test_regex_hdfs_against_ground_truth() -> None:
    pattern = r"^(?P<ts>\d{6} \d{6}) (?P<pid>\d+) (?P<level>[A-Z]+) (?P<logger>[^:]+): (?P<message>.*)$"
    b = _builder("regex", pattern=pattern, timestamp_field="ts", timestamp_formats=["%y%m%d %H%M%S"])
    truth = structured("HDFS")
    for line, row in zip(lines(LOGHUB / "HDFS_2k.log"), truth, strict=True):
        ev = _event(b, line)
        assert ev["message"] == row["Content"]
        assert ev["log"]["logger"] == row["Component"]
        assert ev["log"]["level"] == normalize_severity(row["Level"])
        assert ev["attributes"]["pid"] == row["Pid"]
        assert ev["@timestamp"].startswith(f"20{row['Date'][:2]}-{row['Date'][2:4]}-{row['Date'][4:]}")


def test_regex_apache_error_log_against_ground_truth() -> None:
    b = _builder(
        "regex",
        pattern=r"^\[(?P<ts>[^\]]+)\] \[(?P<level>\w+)\] (?P<message>.*)$",
        timestamp_formats=["apache_error"],
    )
    for line, row in zip(lines(LOGHUB / "Apache_2k.log"), structured("Apache"), strict=True):
        ev = _event(b, line)
        assert ev["message"] == row["Content"]
        assert ev["log"]["level"] == normalize_severity(row["Level"])
        assert ev["@timestamp"].startswith("2005-")


def test_json_lines() -> None:
    b = _builder("json")
    ev = _event(b, '{"ts":"2024-05-01T10:00:00.5+02:00","level":"WARN","msg":"slow","logger":"db","ms":812,'
                   '"ctx":{"q":"select"}}')  # fmt: skip
    assert ev["message"] == "slow" and ev["log"]["level"] == "warning" and ev["log"]["logger"] == "db"
    assert ev["@timestamp"] == "2024-05-01T08:00:00.500000+00:00"
    assert ev["attributes"] == {"ms": 812, "ctx": {"q": "select"}}
    ecs = _event(b, '{"@timestamp":"2024-05-01T10:00:00Z","log":{"level":"error"},"message":"x"}')
    assert ecs["log"]["level"] == "error"
    epoch = _event(b, '{"time":1714557600123,"message":"ms epoch"}')
    assert epoch["@timestamp"] == "2024-05-01T10:00:00.123000+00:00"
    bad = _event(b, '{"message": "cut')
    assert "parse_failure" in bad["logtide"]["flags"] and bad["event"]["original"] == '{"message": "cut'
    assert bad["message"] == '{"message": "cut' and bad["logtide"]["parse_error"].startswith("invalid JSON")
    arr = _event(b, "[1,2]")
    assert "parse_failure" in arr["logtide"]["flags"]


def test_logfmt() -> None:
    assert parse_pairs('a=1 b="two words" c flag=  d="q\\"x"') == {
        "a": "1", "b": "two words", "c": True, "flag": "", "d": 'q"x'
    }  # fmt: skip
    ev = _event(_builder("logfmt"), 'time=2024-05-01T10:00:00Z level=error msg="db down" retries=3')
    assert ev["message"] == "db down" and ev["log"]["level"] == "error"
    assert ev["attributes"] == {"retries": "3"} and ev["@timestamp"].startswith("2024-05-01T10:00:00")
    bad = _event(_builder("logfmt"), 'msg="unterminated')
    assert "parse_failure" in bad["logtide"]["flags"]
    with pytest.raises(ParseError):
        make_parser(ParserConfig(type="logfmt"))("")


def test_unparseable_timestamp_uses_ingest_time_and_flags() -> None:
    ev = _event(_builder("json"), '{"ts":"yesterday-ish","msg":"m"}')
    assert ev["@timestamp"] == "2026-01-01T00:00:00+00:00"
    assert "ts_unparsed" in ev["logtide"]["flags"] and ev["attributes"]["timestamp_raw"] == "yesterday-ish"


def test_timestamps_with_zones_and_formats() -> None:
    tp = TimestampParser(["%Y-%m-%d %H:%M:%S"], "Europe/Paris")
    assert tp.parse("2024-07-01 12:00:00") == "2024-07-01T10:00:00.000000+00:00"
    assert TimestampParser(["clf"]).parse("17/May/2015:10:05:03 -0700") == "2015-05-17T17:05:03.000000+00:00"
    assert TimestampParser(["unix"]).parse("0") == "1970-01-01T00:00:00.000000+00:00"
    assert (
        TimestampParser(["auto"], "America/New_York").parse("May 1 2024 3pm")
        == "2024-05-01T19:00:00.000000+00:00"
    )
    assert TimestampParser(["iso8601"]).parse("not a time") is None


def test_severity_normalisation() -> None:
    for raw, want in [("WARN", "warning"), ("Err", "error"), ("FATAL", "critical"), ("emerg", "emergency"),
                      (3, "error"), ("7", "debug"), ("finest", "trace"), ("weird", "unknown"), (None, "unknown")]:  # fmt: skip
        assert normalize_severity(raw) == want


def test_plain_event_shape_and_stable_id() -> None:
    b = LogEventBuilder(
        LogInputConfig(
            paths=["/x"], labels={"env": "prod"}, fields={"team": "core"}, service={"name": "api"}
        ),
        HOST,
    )
    ids = IdHasher("test-host", "1:2:3")
    assert ids(4096) == stable_id("test-host", "1:2:3", 4096)
    raw, failed = b.build(
        "hello", 4096, ["invalid_utf8"], {"path": "/x"}, ids(4096), "2026-01-01T00:00:00+00:00"
    )
    ev = validate_event(raw)
    assert not failed and ev.message == "hello" and ev.labels == {"env": "prod"}
    assert ev.log is not None and ev.log.offset == 4096 and ev.attributes == {"team": "core"}
    assert ev.service is not None and ev.service.name == "api" and ev.logtide.flags == ["invalid_utf8"]


def test_plain_fast_path_matches_the_contract() -> None:
    b = LogEventBuilder(LogInputConfig(paths=["/x"], labels={"env": "prod"}, service={"name": "api"}), HOST)
    ids = IdHasher("test-host", "1:2:3")
    records: list = []
    flags = b.encode_plain(
        [(0, 4, b"abc", False), (4, 5, b"", False), (5, 9, b"\xffz", True)],
        b"k",
        ids,
        {"path": "/x"},
        records,
    )
    assert sorted(flags) == ["invalid_utf8", "truncated"]
    assert len(records) == 2  # the empty line carries nothing
    first, second = (validate_event(v) for _k, v in records)
    assert first.event.id == stable_id("test-host", "1:2:3", 0) and first.message == "abc"
    assert second.event.id == stable_id("test-host", "1:2:3", 5) and second.logtide.flags == [
        "invalid_utf8",
        "truncated",
    ]
    assert first.labels == {"env": "prod"} and first.service is not None and first.service.name == "api"
    # the joined bytes are the document `build` gives (keys in another order)
    fast = orjson.loads(records[0][1])
    slow = orjson.loads(b.build("abc", 0, [], {"path": "/x"}, ids(0), fast["@timestamp"])[0])
    assert fast == slow


def test_integers_json_cannot_carry_never_crash_the_builder() -> None:
    # found by the fuzz campaign (tests/security): a 50-digit pid, a 30-digit body size
    ev = _event(_builder("syslog"), "Jun 15 14:53:32 combo sshd(pam_unix)[" + "3" * 50 + "]: auth failure")
    assert ev["attributes"]["syslog"]["procid"] == "3" * 50 and "pid" not in ev.get("process", {})
    acc = _event(
        _builder("access_log"), '1.2.3.4 - - [10/Oct/2000:13:55:36 -0700] "GET / HTTP/1.0" 200 ' + "9" * 30
    )
    assert "body" not in acc["http"]["response"]
    # and whatever a parser returns, an unencodable value makes a parse failure, not an exception
    b = _builder("json")
    b.parse = lambda text: {"message": text, "attributes": {"n": 1 << 70}}
    odd = _event(b, "x")
    assert "parse_failure" in odd["logtide"]["flags"] and odd["event"]["original"] == "x"
