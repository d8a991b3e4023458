"""Scrapes of Prometheus text exposition endpoints, as `MetricSample`s on `metrics.raw`.

`samples_from_text` is pure (text in, records out) and uses prometheus-client's own parser; the
loop does the HTTP with httpx. A failed scrape is logged and counted, and the next one comes on
schedule; non-finite values (NaN, +Inf buckets aside) are skipped as the schema refuses them.
"""

from __future__ import annotations

import asyncio
import logging
from typing import TYPE_CHECKING, Any

from logtide.shippers.config import PrometheusScrapeConfig
from logtide.shippers.events import metric_event, now_iso
from prometheus_client.parser import text_string_to_metric_families

if TYPE_CHECKING:
    from logtide.shippers.shipper import Shipper

log = logging.getLogger(__name__)
_TYPES = {"counter": "counter", "gauge": "gauge", "histogram": "histogram", "summary": "summary"}


def samples_from_text(
    text: str, host: dict[str, Any], labels: dict[str, str] | None = None, job: str | None = None
) -> tuple[list[tuple[bytes, bytes]], int]:
    """(records, skipped non-finite samples) for one exposition document; raises ValueError if malformed."""
    base = dict(labels or {})
    if job:
        base["job"] = job
    ts = now_iso()
    out: list[tuple[bytes, bytes]] = []
    skipped = 0
    for family in text_string_to_metric_families(text):
        mtype = _TYPES.get(family.type, "gauge")
        for s in family.samples:
            lab = {**base, **{k: str(v) for k, v in s.labels.items()}}
            enc = metric_event(
                host, s.name, float(s.value), mtype, family.unit or None, lab, ts, dataset="prometheus"
            )
            if enc is None:
                skipped += 1
                continue
            key = f"{host['name']}/{s.name}".encode()
            out.append((key, enc))
    return out, skipped


async def scrape_once(
    client: Any, sc: PrometheusScrapeConfig, host: dict[str, Any]
) -> list[tuple[bytes, bytes]]:
    resp = await client.get(sc.url, timeout=sc.timeout_s, headers={"Accept": "text/plain;version=0.0.4"})
    resp.raise_for_status()
    records, _ = samples_from_text(resp.text, host, sc.labels, sc.job)
    return records


async def scrape_loop(shipper: Shipper, sc: PrometheusScrapeConfig) -> None:
    import httpx
    from logtide.shippers.harvester import send_with_retry

    assert shipper.ctx is not None
    counter = shipper.metrics.metric_samples.labels("prometheus")
    errors = shipper.metrics.scrape_errors.labels(sc.url)
    async with httpx.AsyncClient() as client:
        while True:
            try:
                records = await scrape_once(client, sc, shipper.host)
            except (httpx.HTTPError, ValueError) as exc:
                errors.inc()
                log.warning("scrape of %s failed: %r", sc.url, exc)
                records = []
            if records:
                try:
                    await asyncio.wait_for(
                        send_with_retry(shipper.ctx, shipper.metrics_topic, records, "prometheus"),
                        sc.interval_s * 5,
                    )
                    counter.inc(len(records))
                except TimeoutError:
                    log.warning("scrape of %s dropped: output unavailable", sc.url)
            await asyncio.sleep(sc.interval_s)
