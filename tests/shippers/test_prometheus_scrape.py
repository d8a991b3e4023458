"""Scrape semantics without a network: labels, relabelling, timestamps, report series, staleness, schedule.

The scrape against a real HTTP endpoint, and against real node_exporter and Prometheus, is in
tests/integration/test_prometheus_compare.py.
"""

from __future__ import annotations

import asyncio
import threading
from http.server import BaseHTTPRequestHandler, HTTPServer

import orjson
import pytest
from logtide.schemas import MetricSample
from logtide.shippers.config import PrometheusScrapeConfig
from logtide.shippers.prometheus_scrape import (
    Scraper,
    ScrapeSchedule,
    Staleness,
    encode,
    jitter_offset,
    samples_from_text,
    scrape_once,
    target_labels,
)
from logtide.shippers.relabel import RelabelRule, merge_target_labels, relabel

TEXT = """# HELP node_cpu_seconds_total Seconds the CPUs spent in each mode.
# TYPE node_cpu_seconds_total counter
node_cpu_seconds_total{cpu="0",mode="idle"} 100.5
node_cpu_seconds_total{cpu="0",mode="user"} 20
node_cpu_seconds_total{cpu="1",mode="idle"} 99
# TYPE node_load1 gauge
node_load1 0.5
# TYPE http_request_duration_seconds histogram
http_request_duration_seconds_bucket{le="0.1"} 3
http_request_duration_seconds_bucket{le="1"} 5
http_request_duration_seconds_bucket{le="+Inf"} 6
http_request_duration_seconds_sum 2.5
http_request_duration_seconds_count 6
# TYPE go_gc_duration_seconds summary
go_gc_duration_seconds{quantile="0.5"} 0.001
go_gc_duration_seconds_sum 0.1
go_gc_duration_seconds_count 7
# TYPE odd gauge
odd{job="theirs",instance="x:1"} NaN
stamped{job="theirs"} 4 1700000000123
"""
TARGET = {"job": "node", "instance": "127.0.0.1:9100"}


def by_name(samples: list) -> dict:
    out: dict = {}
    for s in samples:
        out.setdefault(s.name, []).append(s)
    return out


def test_every_label_and_kind_survives() -> None:
    res = samples_from_text(TEXT, 1_000, TARGET)
    got = by_name(res.samples)
    assert res.scraped == 14 and res.nonfinite == 1
    cpu = got["node_cpu_seconds_total"]
    assert {(s.labels["cpu"], s.labels["mode"]) for s in cpu} == {("0", "idle"), ("0", "user"), ("1", "idle")}
    assert all(s.kind == "counter" and s.labels["job"] == "node" and s.ts_ms == 1_000 for s in cpu)
    assert [s.labels["le"] for s in got["http_request_duration_seconds_bucket"]] == ["0.1", "1", "+Inf"]
    assert {s.kind for n, ss in got.items() if n.startswith("http_") for s in ss} == {"histogram"}
    assert got["go_gc_duration_seconds"][0].labels["quantile"] == "0.5"
    assert got["go_gc_duration_seconds"][0].kind == "summary"
    assert got["node_load1"][0].kind == "gauge"


def test_exposition_timestamp_is_honoured_unless_told_not_to() -> None:
    s = by_name(samples_from_text(TEXT, 1_000, TARGET).samples)["stamped"][0]
    assert s.ts_ms == 1_700_000_000_123
    s = by_name(samples_from_text(TEXT, 1_000, TARGET, honor_timestamps=False).samples)["stamped"][0]
    assert s.ts_ms == 1_000


def test_scraped_labels_never_silently_override_target_labels() -> None:
    s = by_name(samples_from_text(TEXT, 0, TARGET).samples)["stamped"][0]
    assert s.labels["job"] == "node" and s.labels["exported_job"] == "theirs"
    s = by_name(samples_from_text(TEXT, 0, TARGET, honor_labels=True).samples)["stamped"][0]
    assert s.labels["job"] == "theirs" and "exported_job" not in s.labels
    assert merge_target_labels({"a": "1"}, {"a": "1"}, False) == {"a": "1"}  # equal values: no conflict


def test_metric_relabel_keep_drop_replace_and_name_filter() -> None:
    rules = [
        RelabelRule(source_labels=["__name__"], regex="node_.*|http_.*", action="keep"),
        RelabelRule(source_labels=["mode"], regex="user", action="drop"),
        RelabelRule(source_labels=["cpu"], regex="(.+)", target_label="core", replacement="c$1"),
        RelabelRule(regex="cpu", action="labeldrop"),
    ]
    got = by_name(samples_from_text(TEXT, 0, TARGET, rules=rules).samples)
    assert set(got) == {"node_cpu_seconds_total", "node_load1", "http_request_duration_seconds_bucket",
                        "http_request_duration_seconds_sum", "http_request_duration_seconds_count"}
    assert sorted(s.labels["core"] for s in got["node_cpu_seconds_total"]) == ["c0", "c1"]
    assert all("cpu" not in s.labels for s in got["node_cpu_seconds_total"])
    assert "core" not in got["node_load1"][0].labels  # no cpu label: the anchored regex does not match
    names = by_name(samples_from_text(TEXT, 0, TARGET, names=["node_*"]).samples)
    assert set(names) == {"node_cpu_seconds_total", "node_load1"}


def test_relabel_rules_follow_prometheus_semantics() -> None:
    lab = {"__name__": "m", "a": "x", "b": "y"}
    r = RelabelRule(source_labels=["a", "b"], regex="x;(.*)", target_label="ab", replacement="got-$1")
    assert relabel(lab, [r])["ab"] == "got-y"
    assert relabel(lab, [RelabelRule(source_labels=["a"], regex="x.", action="keep")]) is None  # anchored
    assert relabel(lab, [RelabelRule(regex="(a)", action="labelmap", replacement="new_$1")])["new_a"] == "x"
    assert relabel(lab, [RelabelRule(regex="a|__name__", action="labelkeep")]) == {"__name__": "m", "a": "x"}
    with pytest.raises(ValueError, match="target_label"):
        RelabelRule(source_labels=["a"])


def test_report_series_and_staleness_when_target_goes_down() -> None:
    sc = PrometheusScrapeConfig(url="http://127.0.0.1:9100/metrics", job="node")
    scraper = Scraper(sc)
    first, up = scraper.result(TEXT, "text/plain; version=0.0.4", 10_000, 0.02)
    assert up
    report = {s.name: s for s in first if s.name.startswith(("up", "scrape_"))}
    assert report["up"].value == 1.0 and report["up"].labels == {"job": "node", "instance": "127.0.0.1:9100"}
    assert report["scrape_samples_scraped"].value == 14
    assert report["scrape_samples_post_metric_relabeling"].value == 13
    assert report["scrape_duration_seconds"].value == pytest.approx(0.02)
    down, up = scraper.result(None, "", 20_000, 5.0)
    assert not up
    stale = [s for s in down if s.stale]
    assert len(stale) == 13 and all(s.ts_ms == 20_000 for s in stale)
    assert [s.value for s in down if s.name == "up"] == [0.0]
    again, _ = scraper.result(None, "", 30_000, 5.0)
    assert not [s for s in again if s.stale]  # one marker per series, not one per failed scrape


def test_a_series_missing_from_a_scrape_goes_stale() -> None:
    st = Staleness()
    a = samples_from_text("a 1\nb 2\n", 0, TARGET).samples
    assert st.update(a, 0) == []
    gone = st.update(samples_from_text("a 1\n", 10, TARGET).samples, 10)
    assert [(s.name, s.stale) for s in gone] == [("b", True)]


def test_encoded_samples_are_valid_metric_samples_and_markers_are_flagged() -> None:
    scraper = Scraper(PrometheusScrapeConfig(url="http://h:1/m"))
    scraper.result("a 1\n", "", 0, 0.0)
    samples, _ = scraper.result("", "", 10_000, 0.0)
    recs = encode({"name": "h", "hostname": "h"}, samples)
    evs = [MetricSample.model_validate(orjson.loads(v)) for _, v in recs]
    stale = [e for e in evs if e.metric.name == "a"]
    assert stale[0].logtide.flags == ["stale"]
    assert evs[0].timestamp.timestamp() == 10.0
    assert {e.metric.type.value for e in evs} >= {"untyped", "gauge"}


def test_schedule_is_fixed_and_jittered_per_target() -> None:
    sch = ScrapeSchedule(10.0, 3.0)
    assert sch.next_after(100.0) == 103.0
    assert sch.next_after(103.0) == 113.0
    assert sch.next_after(125.5) == 133.0  # a late wake-up skips ticks instead of shifting the phase
    offs = {jitter_offset(f"http://h:{p}/metrics", 10.0) for p in range(9100, 9110)}
    assert len(offs) == 10 and all(0 <= o < 10 for o in offs)
    assert jitter_offset("http://h:1/m", 10.0) == jitter_offset("http://h:1/m", 10.0)
    assert target_labels(PrometheusScrapeConfig(url="https://x.example/metrics"))["instance"] == "x.example:443"


class _Handler(BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        if self.headers.get("Authorization") != "Bearer s3cret":
            self.send_response(401)
            self.end_headers()
            return
        body = b"# TYPE a counter\na_total 3\n"
        self.send_response(200)
        self.send_header("Content-Type", "text/plain; version=0.0.4")
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: object) -> None:
        pass


def test_scrape_over_http_with_bearer_auth_and_a_down_target() -> None:
    import httpx
    from logtide.shippers.prometheus_scrape import client_options

    srv = HTTPServer(("127.0.0.1", 0), _Handler)
    threading.Thread(target=srv.serve_forever, daemon=True).start()
    url = f"http://127.0.0.1:{srv.server_port}/metrics"
    try:
        async def run(sc: PrometheusScrapeConfig) -> tuple[list, bool]:
            async with httpx.AsyncClient(**client_options(sc)) as c:
                return await scrape_once(c, Scraper(sc), 5_000)

        samples, up = asyncio.run(run(PrometheusScrapeConfig(url=url, bearer_token="s3cret")))
        assert up and [s.value for s in samples if s.name == "a_total"] == [3.0]
        samples, up = asyncio.run(run(PrometheusScrapeConfig(url=url)))  # no token: 401 is a down target
        assert not up and [s.value for s in samples if s.name == "up"] == [0.0]
    finally:
        srv.shutdown()


def test_fast_reader_agrees_with_prometheus_client_and_falls_back_on_escapes() -> None:
    from logtide.shippers.exposition import Fallback, client_samples, fast_samples, parse_exposition

    fast = fast_samples(TEXT)
    slow = list(client_samples(TEXT, openmetrics=False))
    key = lambda s: (s.name, sorted(s.labels.items()), s.timestamp_s, s.kind)  # noqa: E731
    assert [key(s) for s in fast] == [key(s) for s in slow]
    assert [s.value for s in fast if s.value == s.value] == [s.value for s in slow if s.value == s.value]
    escaped = '# TYPE m gauge\nm{path="a\\"b",x="}"} 1\n'
    with pytest.raises(Fallback):
        fast_samples(escaped)
    (s,) = parse_exposition(escaped)
    assert s.labels == {"path": 'a"b', "x": "}"} and s.kind == "gauge"
    with pytest.raises(ValueError):
        parse_exposition("m{a=} x y z\n")


def test_an_impossible_exposition_timestamp_is_skipped_and_counted() -> None:
    res = samples_from_text("a 1 999999999999999999\nb 2\n", 5_000, TARGET)
    assert [s.name for s in res.samples] == ["b"] and res.nonfinite == 1


def test_openmetrics_is_accepted() -> None:
    om = '# TYPE req_seconds counter\n# UNIT req_seconds seconds\nreq_seconds_total{code="200"} 3 1700000000.5\n# EOF\n'
    (s,) = samples_from_text(om, 0, TARGET, openmetrics=True).samples
    assert (s.name, s.kind, s.unit, s.ts_ms) == ("req_seconds_total", "counter", "seconds", 1_700_000_000_500)
