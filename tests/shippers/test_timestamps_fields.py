"""Timestamps and fields that cannot silently be wrong: ambiguous guesses flagged, split date and
time groups combined, year-less formats with a year reference, host/service from parsed fields,
nginx key=value trailers, one severity table, documented examples load."""

from __future__ import annotations

import re
from datetime import UTC, datetime
from pathlib import Path

import orjson
import pytest
import yaml
from hypothesis import given, settings
from hypothesis import strategies as st
from logtide.schemas.severity import severity_of
from logtide.shippers.config import LogInputConfig, ParserConfig, ShipperConfig
from logtide.shippers.events import LogEventBuilder, host_block
from logtide.shippers.parsers.severity import normalize_severity
from logtide.shippers.parsers.timestamps import TimestampParser, canonical_utc
from logtide.streams.enrich import normalise_severity
from pydantic import ValidationError

from tests.shippers.helpers import LOGHUB, lines, structured, validate_event

HOST = host_block("shipping-host")
README = Path(__file__).resolve().parents[2] / "shippers" / "README.md"


def _builder(ptype: str, **kw) -> LogEventBuilder:  # type: ignore[no-untyped-def]
    return LogEventBuilder(LogInputConfig(paths=["/x"], parser=ParserConfig(type=ptype, **kw)), HOST)


def _event(b: LogEventBuilder, text: str) -> dict:
    raw, _failed = b.build(text, 0, [], {"path": "/x"}, "id", "2026-01-01T00:00:00+00:00")
    validate_event(raw)
    return orjson.loads(raw)


def test_auto_flags_a_numeric_date_that_reads_two_ways() -> None:
    # Spark's "17/06/09 20:10:40" is 2017-06-09; dateutil reads 2009-06-17: never unflagged
    b = _builder(
        "regex", pattern=r"^(?P<ts>\S+ \S+) (?P<level>\w+) (?P<message>.*)$", timestamp_formats=["auto"]
    )
    ev = _event(b, "17/06/09 20:10:40 INFO executor.Executor: Running task 0.0")
    assert (
        "ts_ambiguous" in ev["logtide"]["flags"] and ev["attributes"]["timestamp_raw"] == "17/06/09 20:10:40"
    )
    iso = _event(b, "2017-06-09 20:10:40 INFO executor.Executor: Running task 0.0")
    assert iso["logtide"]["flags"] == [] and iso["@timestamp"].startswith("2017-06-09T20:10:40")
    # naming the format is the cure: no guess, no flag
    named = _builder("regex", pattern=r"^(?P<ts>\S+ \S+) (?P<level>\w+) (?P<message>.*)$",
                     timestamp_formats=["%y/%m/%d %H:%M:%S"])  # fmt: skip
    ev = _event(named, "17/06/09 20:10:40 INFO executor.Executor: Running task 0.0")
    assert ev["@timestamp"].startswith("2017-06-09T20:10:40") and ev["logtide"]["flags"] == []


def test_date_and_time_groups_are_combined_on_real_hdfs_lines() -> None:
    # the groups named as loghub's own documentation names the columns
    pattern = (
        r"^(?P<date>\d{6}) (?P<time>\d{6}) (?P<pid>\d+) (?P<level>[A-Z]+) (?P<logger>[^:]+): (?P<message>.*)$"
    )
    b = _builder("regex", pattern=pattern, timestamp_formats=["%y%m%d %H%M%S"])
    for line, row in list(zip(lines(LOGHUB / "HDFS_2k.log"), structured("HDFS"), strict=True))[:300]:
        ev = _event(b, line)
        d, t = row["Date"], row["Time"].zfill(6)
        assert ev["@timestamp"].startswith(f"20{d[:2]}-{d[2:4]}-{d[4:]}T{t[:2]}:{t[2:4]}:{t[4:]}"), line
        assert "date" not in ev.get("attributes", {}) and "time" not in ev.get("attributes", {})
    # with `auto` "081109 203615" reads as 2009-08-11 (or 2008-11-09 year-first): flagged, never silent
    auto = _event(
        _builder("regex", pattern=pattern, timestamp_formats=["auto"]), lines(LOGHUB / "HDFS_2k.log")[0]
    )
    assert "ts_ambiguous" in auto["logtide"]["flags"]


def test_year_less_formats_take_a_year_reference_and_roll_over_at_new_year() -> None:
    jan = datetime(2025, 1, 1, 0, 30, tzinfo=UTC)
    now = TimestampParser(["rfc3164"], now=lambda: jan)
    assert now.parse("Dec 31 23:59:00") == "2024-12-31T23:59:00.000000+00:00"  # last year's December
    assert now.parse("Jan  1 00:10:00") == "2025-01-01T00:10:00.000000+00:00"
    assert (
        TimestampParser(["rfc3164"], year=2017).parse("Nov  9 12:01:01") == "2017-11-09T12:01:01.000000+00:00"
    )
    mtime = TimestampParser(["%b %d %H:%M:%S"])
    mtime.reference = datetime(2019, 3, 1, tzinfo=UTC)  # a file last written in March 2019
    assert mtime.parse("Nov  9 12:01:01") == "2018-11-09T12:01:01.000000+00:00"
    assert mtime.parse("Feb 28 12:01:01") == "2019-02-28T12:01:01.000000+00:00"
    # the builder of a syslog input with a fixed year, on real loghub lines
    b = _builder("syslog", year=2005)
    ev = _event(b, lines(LOGHUB / "Linux_2k.log")[0])
    assert ev["@timestamp"].startswith("2005-06-14T15:16:01")
    assert _builder("syslog", year="file_mtime").year_from_mtime


def test_host_and_service_from_parsed_fields() -> None:
    b = LogEventBuilder(LogInputConfig(paths=["/x"], service={"name": "static", "environment": "prod"},
                                       parser=ParserConfig(type="syslog", host_field="syslog.hostname")), HOST)  # fmt: skip
    ev = _event(b, "Jun 14 15:16:01 combo sshd(pam_unix)[19939]: check pass; user unknown")
    assert ev["host"]["name"] == "combo" and "hostname" not in ev["attributes"]["syslog"]
    assert ev["service"] == {"name": "static", "environment": "prod"}
    j = LogEventBuilder(LogInputConfig(paths=["/x"], service={"name": "static", "environment": "prod"},
                                       parser=ParserConfig(type="json", host_field="node", service_field="app")), HOST)  # fmt: skip
    ev = _event(j, '{"msg": "m", "node": "db-7", "app": "billing"}')
    assert ev["host"]["name"] == "db-7" and ev["service"] == {"name": "billing", "environment": "prod"}
    assert "attributes" not in ev
    missing = _event(j, '{"msg": "m"}')
    assert missing["host"]["name"] == "shipping-host" and missing["service"]["name"] == "static"


def test_unknown_timestamp_format_is_refused_with_the_reason() -> None:
    with pytest.raises(ValidationError, match="unknown timestamp format 'iso'"):
        ParserConfig(type="json", timestamp_formats=["iso"])
    ParserConfig(type="regex", pattern="(?P<ts>.*)", timestamp_formats=["apache_error", "%d.%m.%Y", "auto"])


def test_nginx_trailers_become_ecs_durations_and_the_status_sets_the_level() -> None:
    # nginx: log_format main '$remote_addr - $remote_user [$time_local] "$request" $status $body_bytes_sent
    #   "$http_referer" "$http_user_agent" rt=$request_time uct="$upstream_connect_time"
    #   uht="$upstream_header_time" urt="$upstream_response_time"';
    line = ('203.0.113.9 - - [01/Dec/2026:00:10:11 +0000] "POST /api/pay HTTP/1.1" 504 167 "-" "Mozilla/5.0" '
            'rt=60.002 uct="0.001" uht="-" urt="30.001, 30.000" cid=7f3a')  # fmt: skip
    ev = _event(_builder("access_log"), line)
    assert ev["log"]["level"] == "error" and ev["http"]["response"]["status_code"] == 504
    assert ev["http"]["request"]["duration_ms"] == 60002.0
    assert ev["http"]["upstream"] == {"connect_time_ms": 1.0, "response_time_ms": 60001.0}
    assert ev["attributes"] == {"cid": "7f3a"}
    ok = _event(_builder("access_log"), '10.0.0.1 - - [01/Dec/2026:00:10:11 +0000] "GET / HTTP/1.1" 404 0 "-" "-" '
                                         'rt=0.000 ua="curl/8.5.0"')  # fmt: skip
    assert ok["log"]["level"] == "warning" and ok["user_agent"]["original"] == "curl/8.5.0"
    odd = _event(_builder("access_log"), '10.0.0.1 - - [01/Dec/2026:00:10:11 +0000] "GET / HTTP/1.1" 200 0 "-" "-" '
                                          "some free text")  # fmt: skip
    assert odd["attributes"] == {"extra": "some free text"} and odd["log"]["level"] == "info"


def test_one_severity_table_for_shipper_and_streams() -> None:
    for word in ("SEVERE", "fatal", "wrn", "notice", "7", 3, "finest", "nonsense", None):
        assert normalize_severity(word) == normalise_severity(word).value == severity_of(word).value
    assert severity_of("severe").value == "error"


def test_every_documented_configuration_example_loads() -> None:
    blocks = re.findall(r"```yaml\n(.*?)```", README.read_text(), re.DOTALL)
    assert blocks, "shippers/README.md has yaml examples"
    for block in blocks:
        ShipperConfig(**yaml.safe_load(block)["shipper"])


_ISO_CHARS = "0123456789-:T.Z+ tz,"


@settings(max_examples=3000, deadline=None)
@given(
    st.one_of(
        st.text(alphabet=_ISO_CHARS, min_size=18, max_size=33),
        st.builds(
            lambda dt, frac, zone: dt.strftime("%Y-%m-%dT%H:%M:%S") + frac + zone,
            st.datetimes(min_value=datetime(1, 1, 1), max_value=datetime(9999, 12, 31)),
            st.sampled_from(["", ".1", ".123", ".123456", ".1234567", ",123"]),
            st.sampled_from(["Z", "+00:00", "+01:00", "z", "", " Z"]),
        ),
    )
)
def test_the_iso_utc_fast_path_gives_what_the_general_path_gives(raw: str) -> None:
    """JSON loggers' `...T12:00:00.123Z` skips the datetime round trip; never with another result."""
    general = TimestampParser(["iso8601", "auto"])
    slow = general._cached(raw, None)  # the general path, as for any other shape
    fast = canonical_utc(raw)
    if fast is not None:
        assert (fast, False) == slow
    assert general.parse_flagged(raw) == slow
