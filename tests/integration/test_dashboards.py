"""The dashboards people import, checked against real data: the demo's logs go through the embedded
pipeline into chdb and through the Elasticsearch sink into the local cluster, then

- every Grafana SQL query (panels, annotations, variables) runs on chdb with its macros expanded
  the way grafana-clickhouse-datasource expands them and returns rows;
- every Elasticsearch query behind a Kibana visualisation (Vega specs carry their query DSL, with
  the time range Kibana adds for `%context%`), the Discover search and the Grafana ES panel runs
  on the local cluster and returns the expected buckets;
- every field a saved object uses exists in the real mappings with the right type;
- every self-metric a Grafana panel plots is one the processes export.
No Kibana or Grafana runs here: what they would add on top (rendering) is not tested."""

from __future__ import annotations

import json
import re
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import orjson
import pytest
from elasticsearch import AsyncElasticsearch
from logtide.schemas import decode, to_document
from logtide.sinks.clickhouse_sink import ChdbBackend, ClickHouseSink
from logtide.sinks.elasticsearch_sink import ElasticsearchSink
from logtide.sinks.metrics import SinkMetrics
from logtide.sinks.retry import RetryPolicy

from logtide.demo_data import DemoSpec, demo_config_yaml, write_demo_logs
from tests.integration.test_elasticsearch_sink import _cleanup as cleanup_es
from tests.samples import samples

pytestmark = pytest.mark.integration
DOCKER = Path(__file__).parent.parent.parent / "docker"
END = datetime(2026, 3, 2, 15, 0, tzinfo=UTC)
SPEC = DemoSpec(end=END, minutes=120)
SERVICE = "checkout"  # the demo's incident service: the dashboards' variable value here


@pytest.fixture(scope="module")
def demo_out(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from logtide.run_command import build_config, run_pipeline

    root = tmp_path_factory.mktemp("dash")
    write_demo_logs(root / "logs", SPEC)
    (root / "demo.yaml").write_text(demo_config_yaml(root / "logs"))
    summary = run_pipeline(build_config(str(root / "demo.yaml")), root / "out", True, clickhouse=True, quiet=True)
    assert summary.anomalies >= 1
    # One dead letter, so the dead-letter panels have something to show (the demo makes none).
    letter = next(to_document(decode(orjson.dumps(d), m)) for m, d in samples().items() if m.KIND == "dead_letter")
    letter["@timestamp"] = (END - timedelta(minutes=5)).isoformat().replace("+00:00", "Z")
    backend = ChdbBackend(root / "out" / "clickhouse")
    ClickHouseSink(backend).write([letter])
    backend.close()
    (root / "out" / "deadletter.ndjson").write_bytes(orjson.dumps(letter) + b"\n")
    return root / "out"


def _ndjson(path: Path) -> list[dict[str, Any]]:
    return [orjson.loads(x) for x in path.read_bytes().splitlines() if x.strip()]


# --- Grafana on ClickHouse --------------------------------------------------------------------


def expand_grafana_macros(sql: str, start: datetime, end: datetime, interval_s: int, variables: dict) -> str:
    """What grafana-clickhouse-datasource does with its macros (its documented expansions), then
    Grafana's variable interpolation."""
    f, t = int(start.timestamp()), int(end.timestamp())
    sql = re.sub(r"\$__timeFilter\(([^)]+)\)", rf"\1 >= toDateTime({f}) AND \1 <= toDateTime({t})", sql)
    sql = re.sub(r"\$__timeInterval\(([^)]+)\)", rf"toStartOfInterval(toDateTime(\1), INTERVAL {interval_s} second)", sql)
    sql = sql.replace("$__fromTime", f"toDateTime({f})").replace("$__toTime", f"toDateTime({t})")
    for name, value in variables.items():
        sql = sql.replace(f"${{{name}}}", value).replace(f"${name}", value)
    assert "$" not in sql, f"unexpanded macro or variable in {sql}"
    return sql


def grafana_sql(dash: dict) -> list[tuple[str, str]]:
    """(where, SQL) of every ClickHouse query in a dashboard: panels, annotations, variables."""
    out = []
    for p in dash["panels"]:
        for t in p.get("targets", []):
            if (t.get("datasource") or p["datasource"])["type"] == "grafana-clickhouse-datasource":
                out.append((f"panel {p['title']}", t["rawSql"]))
    for a in dash.get("annotations", {}).get("list", []):
        if a["datasource"]["type"] == "grafana-clickhouse-datasource":
            out.append((f"annotation {a['name']}", a["target"]["rawSql"]))
    for v in dash.get("templating", {}).get("list", []):
        if v["type"] == "query" and v["datasource"]["type"] == "grafana-clickhouse-datasource":
            out.append((f"variable {v['name']}", v["query"]))
    return out


def test_every_grafana_sql_query_returns_rows_for_the_demo(demo_out: Path) -> None:
    backend = ChdbBackend(demo_out / "clickhouse")
    try:
        seen = 0
        for path in sorted((DOCKER / "grafana" / "dashboards").glob("*.json")):
            for where, sql in grafana_sql(json.loads(path.read_text())):
                rows = backend.query_rows(expand_grafana_macros(sql, SPEC.start, SPEC.end, 60, {"service": SERVICE}))
                assert rows, f"{path.name} {where}: no rows"
                seen += 1
        assert seen >= 10
        overview = json.loads((DOCKER / "grafana/dashboards/logtide-overview.json").read_text())
        services = backend.query_rows(overview["templating"]["list"][0]["query"])
        assert {r["service"] for r in services} == {"auth", "catalog", "checkout", "search"}
        anno = overview["annotations"]["list"][0]["target"]["rawSql"]
        notes = backend.query_rows(expand_grafana_macros(anno, SPEC.start, SPEC.end, 60, {"service": SERVICE}))
        assert all(SPEC.incident_start <= _utc(n["time"]) <= SPEC.incident_end for n in notes)
        assert notes and {"time", "text", "tags"} <= set(notes[0])
        quiet = backend.query_rows(expand_grafana_macros(anno, SPEC.start, SPEC.end, 60, {"service": "auth"}))
        assert quiet == []  # anomalies annotate only the series of their own service
    finally:
        backend.close()


def _utc(text: str) -> datetime:
    return datetime.fromisoformat(text).replace(tzinfo=UTC)


def test_self_metric_panels_plot_exported_metrics() -> None:
    from logtide.shippers.metrics import ShipperMetrics
    from logtide.streams.metrics import StreamsMetrics

    exported = set()
    for registry in (ShipperMetrics().registry, SinkMetrics().registry, StreamsMetrics().registry):
        for family in registry.collect():
            exported.add(family.name + ("_total" if family.type == "counter" else ""))
    dash = json.loads((DOCKER / "grafana/dashboards/logtide-health.json").read_text())
    used = {m for p in dash["panels"] for t in p["targets"] for m in re.findall(r"logtide_\w+", t["expr"])}
    assert used and used <= exported, used - exported
    assert {n.split("_")[1] for n in used} == {"shipper", "sink", "streams"}


# --- Kibana and the Grafana Elasticsearch panel on the local Elasticsearch ------------------------


@pytest.fixture(scope="module")
def es_loaded(demo_out: Path, es_url: str):
    import asyncio
    import uuid

    prefix = f"ltd{uuid.uuid4().hex[:8]}"

    async def load() -> None:
        async with AsyncElasticsearch(es_url) as es:
            sink = ElasticsearchSink(es, prefix=prefix, retry=RetryPolicy("elasticsearch", SinkMetrics()))
            await sink.ensure_templates()
            docs = []
            for name in ("enriched", "aggregates", "anomalies", "deadletter"):
                docs += _ndjson(demo_out / f"{name}.ndjson")
            for i in range(0, len(docs), 5000):
                res = await sink.write(docs[i : i + 5000])
                assert res.rejected == []
            await es.indices.refresh(index=f"{prefix}-*")

    async def clean() -> None:
        async with AsyncElasticsearch(es_url) as es:
            await cleanup_es(es, prefix)

    asyncio.run(load())
    yield prefix
    asyncio.run(clean())


def _kibana_objects() -> list[dict]:
    return [json.loads(line) for line in (DOCKER / "kibana" / "logtide.ndjson").read_text().splitlines()]


def _vega_specs() -> dict[str, dict]:
    out = {}
    for o in _kibana_objects():
        if o["type"] == "visualization":
            vis = json.loads(o["attributes"]["visState"])
            assert vis["type"] == "vega"
            out[o["id"]] = json.loads(vis["params"]["spec"])
    return out


def kibana_context_search(url: dict, prefix: str, start: datetime, end: datetime) -> dict:
    """The request Kibana's Vega plugin makes for `%context%`: the body plus the dashboard's time
    range on `%timefield%` (no filters set)."""
    body = dict(url["body"])
    assert "query" not in body  # Kibana refuses a query beside %context%
    body["query"] = {"bool": {"must": [{"range": {url["%timefield%"]: {
        "gte": start.isoformat(), "lte": end.isoformat(), "format": "strict_date_optional_time"}}}]}}  # fmt: skip
    return {"index": url["index"].replace("logtide-", f"{prefix}-", 1), "body": body}


def _walk_fields(node: Any, agg: str | None = None) -> list[tuple[str, str]]:
    """(field, aggregation kind) for every `field` in an aggregation body."""
    out = []
    if isinstance(node, dict):
        for k, v in node.items():
            if k == "field" and isinstance(v, str):
                out.append((v, agg or ""))
            else:
                out += _walk_fields(v, k if k in {"terms", "date_histogram", "max", "avg", "sum", "min"} else agg)
    elif isinstance(node, list):
        for v in node:
            out += _walk_fields(v, agg)
    return out


def _field_type(mappings: dict, index: str, field: str) -> str | None:
    for name, m in mappings.items():
        if not name.startswith(index.rstrip("*")):
            continue
        props: Any = m["mappings"]
        for part in field.split("."):
            props = (props.get("properties") or {}).get(part)
            if props is None:
                break
        else:
            return props.get("type", "object")
        head = field.split(".")
        for i in range(1, len(head)):  # a key inside a flattened field
            props = m["mappings"]
            for part in head[:i]:
                props = (props.get("properties") or {}).get(part) or {}
            if props.get("type") == "flattened":
                return "keyword"
    return None


WANTED = {"terms": {"keyword"}, "date_histogram": {"date", "date_nanos"}, "max": {"double", "long"},
          "avg": {"double", "long"}, "": None}  # fmt: skip


async def test_every_field_a_saved_object_uses_exists_with_its_type(es_loaded: str, es_url: str) -> None:
    prefix = es_loaded
    async with AsyncElasticsearch(es_url) as es:
        mappings = (await es.indices.get_mapping(index=f"{prefix}-*")).body
    objects = {o["id"]: o for o in _kibana_objects()}
    for o in objects.values():
        if o["type"] == "index-pattern":
            index = o["attributes"]["title"].replace("logtide-", f"{prefix}-", 1)
            assert _field_type(mappings, index, o["attributes"]["timeFieldName"]) in {"date", "date_nanos"}, o["id"]
    search = objects["logtide-search-errors"]
    for column in search["attributes"]["columns"]:
        assert _field_type(mappings, f"{prefix}-logs-*", column) in {"keyword", "text"}, column
    for vid, spec in _vega_specs().items():
        url = spec["data"]["url"]
        index = url["index"].replace("logtide-", f"{prefix}-", 1)
        for field, agg in _walk_fields(url["body"].get("aggs", {})):
            kind = _field_type(mappings, index, field)
            assert kind is not None, f"{vid}: {field} missing in {index}"
            if WANTED.get(agg):
                assert kind in WANTED[agg], f"{vid}: {field} is {kind}, {agg} needs {WANTED[agg]}"
        for field in url["body"].get("_source", []):
            assert _field_type(mappings, index, field) is not None, f"{vid}: {field}"


async def test_kibana_visualisation_queries_return_the_expected_buckets(es_loaded: str, es_url: str) -> None:
    prefix = es_loaded
    specs = _vega_specs()
    async with AsyncElasticsearch(es_url) as es:

        async def run(vid: str) -> dict:
            req = kibana_context_search(specs[vid]["data"]["url"], prefix, SPEC.start, SPEC.end)
            return (await es.search(index=req["index"], **req["body"])).body

        volume = await run("logtide-vis-log-volume")
        buckets = volume["aggregations"]["t"]["buckets"]
        assert len(buckets) >= 100  # one per minute of the two hours
        levels = {b["key"] for t in buckets for b in t["level"]["buckets"]}
        assert {"info", "error"} <= levels

        ratio = await run("logtide-vis-error-ratio")
        by_service = {s["key"]: s for s in ratio["aggregations"]["m"]["svc"]["buckets"]}
        assert set(by_service) == {"auth", "catalog", "checkout", "search"}
        peak = max(by_service["checkout"]["t"]["buckets"], key=lambda b: b["v"]["value"] or 0)
        peak_at = datetime.fromisoformat(peak["key_as_string"].replace("Z", "+00:00"))
        assert SPEC.incident_start <= peak_at <= SPEC.incident_end + timedelta(minutes=1)
        assert peak["v"]["value"] > 0.2

        p90 = await run("logtide-vis-p90")
        worst = {s["key"]: max(b["v"]["value"] or 0 for b in s["t"]["buckets"]) for s in p90["aggregations"]["m"]["svc"]["buckets"]}
        assert worst["checkout"] > 2 * max(v for k, v in worst.items() if k != "checkout")

        anomalies = await run("logtide-vis-anomalies")
        # the spec's first transform drops resolved records (their value is back inside the band)
        assert specs["logtide-vis-anomalies"]["transform"][0] == {"filter": "datum._source.status !== 'resolved'"}
        hits = [h["_source"] for h in anomalies["hits"]["hits"] if h["_source"].get("status") != "resolved"]
        assert hits and all("checkout" in h["series"]["key"] for h in hits)
        assert all(h["value"] > h["band"]["upper"] for h in hits)

        search = next(o for o in _kibana_objects() if o["id"] == "logtide-search-errors")
        kql = json.loads(search["attributes"]["kibanaSavedObjectMeta"]["searchSourceJSON"])["query"]["query"]
        field, value = kql.split(":")  # `log.level:error` compiles to a match on the keyword
        errors = await es.search(
            index=f"{prefix}-logs-*", size=20, query={"bool": {"filter": [{"match": {field: value}}]}},
            sort=[{"@timestamp": "desc"}],
        )  # fmt: skip
        assert errors["hits"]["total"]["value"] > 100
        assert all(h["_source"]["trace"]["id"] and h["_source"]["service"]["name"] for h in errors["hits"]["hits"])


async def test_grafana_elasticsearch_panel_query_returns_levels(es_loaded: str, es_url: str) -> None:
    """The request Grafana's Elasticsearch datasource builds for the panel's terms + date_histogram."""
    dash = json.loads((DOCKER / "grafana/dashboards/logtide-overview.json").read_text())
    panel = next(p for p in dash["panels"] if p["datasource"]["type"] == "elasticsearch")
    target = panel["targets"][0]
    terms, hist = target["bucketAggs"]
    body = {
        "size": 0,
        "query": {"bool": {"filter": [
            {"range": {target["timeField"]: {"gte": int(SPEC.start.timestamp() * 1000),
                                             "lte": int(SPEC.end.timestamp() * 1000), "format": "epoch_millis"}}},
            {"query_string": {"analyze_wildcard": True, "query": target["query"].replace("${service}", SERVICE)}},
        ]}},
        "aggs": {terms["id"]: {
            "terms": {"field": terms["field"], "size": int(terms["settings"]["size"]),
                      "order": {"_count": "desc"}, "min_doc_count": int(terms["settings"]["min_doc_count"])},
            "aggs": {hist["id"]: {"date_histogram": {"field": hist["field"], "fixed_interval": hist["settings"]["interval"],
                                                      "min_doc_count": 0, "format": "epoch_millis"}}},
        }},
    }  # fmt: skip
    async with AsyncElasticsearch(es_url) as es:
        out = await es.search(index=f"{es_loaded}-logs-*", **body)
    levels = {b["key"]: b for b in out["aggregations"][terms["id"]]["buckets"]}
    assert {"info", "error"} <= set(levels)
    assert len(levels["info"][hist["id"]]["buckets"]) >= 100
