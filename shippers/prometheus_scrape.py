"""Scrapes of Prometheus/OpenMetrics endpoints, as `MetricSample`s on `metrics.raw`, the way Prometheus scrapes.

- A fixed schedule: scrape k of a target starts at `offset + k * interval` (wall clock, no drift);
  the offset is a per-target jitter derived from the URL, so targets do not all fire at once. A scrape
  that overruns skips the ticks it missed rather than piling up.
- Samples are stamped with the scrape's start time, unless the exposition gives its own timestamp
  (honoured unless `honor_timestamps: false`).
- Target labels `job`, `instance` (host:port of the URL) and configured labels join every sample;
  a conflicting scraped label is kept as `exported_<name>` unless `honor_labels` (as in Prometheus).
  `metric_relabel_configs` (keep/drop/replace/labelkeep/labeldrop/labelmap) and a name filter apply
  after that.
- Per scrape, the report series `up`, `scrape_duration_seconds`, `scrape_samples_scraped` and
  `scrape_samples_post_metric_relabeling`; a series missing from a scrape, or every series of a
  target that went down, gets a staleness marker (a sample flagged `stale`), so no stale value is
  carried on.

`samples_from_text`, `report_samples`, `Staleness` and `ScrapeSchedule` are pure; `scrape_loop` does
the HTTP with httpx.
"""

from __future__ import annotations

import asyncio
import fnmatch
import logging
import math
import ssl
import time
import zlib
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

from logtide.shippers.config import PrometheusScrapeConfig
from logtide.shippers.events import metric_event
from logtide.shippers.exposition import parse_exposition
from logtide.shippers.relabel import NAME, RelabelRule, merge_target_labels, relabel

if TYPE_CHECKING:
    from logtide.shippers.shipper import Shipper

log = logging.getLogger(__name__)
STALE_FLAG = "stale"
_MAX_TS_S = 253_402_300_799  # 9999-12-31T23:59:59Z, the last instant a datetime holds
ACCEPT = "application/openmetrics-text;version=1.0.0;q=0.5,text/plain;version=0.0.4;q=0.4,*/*;q=0.1"


@dataclass(slots=True)
class Sample:
    """One scraped sample after target labels and relabelling."""

    name: str
    labels: dict[str, str]
    value: float
    ts_ms: int
    kind: str = "untyped"
    unit: str | None = None
    stale: bool = False

    @property
    def series(self) -> tuple[str, tuple[tuple[str, str], ...]]:
        return self.name, tuple(sorted(self.labels.items()))


@dataclass(slots=True)
class ScrapeResult:
    samples: list[Sample]
    scraped: int  # samples in the exposition
    nonfinite: int  # skipped: NaN/inf values (the schema refuses them) or impossible timestamps


def target_labels(sc: PrometheusScrapeConfig) -> dict[str, str]:
    """`job` and `instance` (host:port of the URL, as Prometheus names a target) plus configured labels."""
    u = urlsplit(sc.url)
    port = u.port or (443 if u.scheme == "https" else 80)
    out = {"job": sc.job or "prometheus", "instance": f"{u.hostname}:{port}"}
    out.update(sc.labels)
    return out


def samples_from_text(
    text: str,
    scrape_ms: int,
    target: dict[str, str],
    *,
    honor_labels: bool = False,
    honor_timestamps: bool = True,
    rules: list[RelabelRule] | None = None,
    names: list[str] | None = None,
    openmetrics: bool = False,
) -> ScrapeResult:
    """The samples of one exposition document (text format 0.0.4 or OpenMetrics); ValueError if malformed."""
    out: list[Sample] = []
    nonfinite = 0
    rules = rules or []
    raw = parse_exposition(text, openmetrics)
    for s in raw:
        value = s.value
        if not math.isfinite(value) and not (value == math.inf and s.name.endswith("_bucket")):
            nonfinite += 1
            continue
        lab = merge_target_labels(s.labels, target, honor_labels) if s.labels else dict(target)
        name = s.name
        if rules:
            lab[NAME] = name
            new = relabel(lab, rules)
            if new is None or not new.get(NAME):
                continue
            lab = new
            name = lab.pop(NAME)
        if names and not any(fnmatch.fnmatchcase(name, g) for g in names):
            continue
        ts = scrape_ms
        if honor_timestamps and s.timestamp_s is not None:
            if not 0 <= s.timestamp_s < _MAX_TS_S:  # NaN fails too: no datetime holds it
                nonfinite += 1
                continue
            ts = round(s.timestamp_s * 1000)
        out.append(Sample(name, lab, value, ts, s.kind, s.unit))
    scraped = len(raw)
    return ScrapeResult(out, scraped, nonfinite)


def report_samples(  # noqa: PLR0917
    target: dict[str, str], scrape_ms: int, up: bool, duration_s: float, scraped: int, kept: int
) -> list[Sample]:
    """The series Prometheus adds per scrape: up, scrape_duration_seconds, samples scraped and kept."""
    base = dict(target)
    return [
        Sample("up", dict(base), 1.0 if up else 0.0, scrape_ms, "gauge"),
        Sample("scrape_duration_seconds", dict(base), duration_s, scrape_ms, "gauge", "seconds"),
        Sample("scrape_samples_scraped", dict(base), float(scraped), scrape_ms, "gauge"),
        Sample("scrape_samples_post_metric_relabeling", dict(base), float(kept), scrape_ms, "gauge"),
    ]


@dataclass(slots=True)
class Staleness:
    """The series of a target's last scrape: those that vanish get one staleness marker each."""

    last: dict[tuple[str, tuple[tuple[str, str], ...]], Sample] = field(default_factory=dict)

    def update(self, samples: list[Sample], scrape_ms: int) -> list[Sample]:
        """Staleness markers (stamped `scrape_ms`) for the series of the last scrape absent from this one."""
        now = {s.series: s for s in samples}
        gone = [Sample(s.name, dict(s.labels), 0.0, scrape_ms, s.kind, s.unit, stale=True)
                for k, s in self.last.items() if k not in now]  # fmt: skip
        self.last = now
        return gone


def jitter_offset(url: str, interval_s: float) -> float:
    """A stable per-target offset in [0, interval): the same target always scrapes at the same phase."""
    return (zlib.crc32(url.encode()) % 1_000_000) / 1_000_000 * interval_s


@dataclass(slots=True)
class ScrapeSchedule:
    """Scrape k starts at `offset + k * interval` seconds since the epoch (wall clock): no drift."""

    interval_s: float
    offset_s: float

    def next_after(self, now_s: float) -> float:
        k = math.floor((now_s - self.offset_s) / self.interval_s) + 1
        return self.offset_s + k * self.interval_s


def encode(host: dict[str, Any], samples: list[Sample], dataset: str = "prometheus") -> list[tuple[bytes, bytes]]:
    """(key, encoded MetricSample) records; a staleness marker carries the `stale` flag."""
    out: list[tuple[bytes, bytes]] = []
    stamps: dict[int, str] = {}  # a scrape's samples share one time: format it once
    for s in samples:
        ts = stamps.get(s.ts_ms)
        if ts is None:
            ts = stamps[s.ts_ms] = datetime.fromtimestamp(s.ts_ms / 1000, UTC).isoformat(timespec="milliseconds")
        enc = metric_event(host, s.name, s.value, s.kind, s.unit, s.labels, ts, dataset=dataset,
                           flags=[STALE_FLAG] if s.stale else None)  # fmt: skip
        if enc is not None:
            out.append((f"{host['name']}/{s.name}".encode(), enc))
    return out


def client_options(sc: PrometheusScrapeConfig) -> dict[str, Any]:
    """httpx client arguments for the target's auth and TLS settings."""
    opts: dict[str, Any] = {"headers": {"Accept": ACCEPT}}
    if sc.basic_auth is not None:
        opts["auth"] = (sc.basic_auth.username, sc.basic_auth.password or "")
    token = sc.bearer_token
    if token is None and sc.bearer_token_file is not None:
        token = sc.bearer_token_file.read_text().strip()
    if token:
        opts["headers"]["Authorization"] = f"Bearer {token}"
    t = sc.tls
    if t is not None:
        ctx = ssl.create_default_context(cafile=str(t.ca_file) if t.ca_file else None)
        if t.insecure_skip_verify:
            ctx.check_hostname = False
            ctx.verify_mode = ssl.CERT_NONE
        if t.cert_file:
            ctx.load_cert_chain(str(t.cert_file), str(t.key_file) if t.key_file else None)
        opts["verify"] = ctx
    return opts


class Scraper:
    """One target: scrape, label, relabel, add report series and staleness markers."""

    def __init__(self, sc: PrometheusScrapeConfig) -> None:
        self.sc = sc
        self.target = target_labels(sc)
        self.staleness = Staleness()
        self.report_staleness = Staleness()

    def result(
        self, text: str | None, content_type: str, scrape_ms: int, duration_s: float
    ) -> tuple[list[Sample], bool]:
        """(everything one scrape ships: samples, markers for vanished series, report series; up).

        `text` None means the scrape failed: `up` is 0 and every series of the last scrape goes stale.
        """
        sc = self.sc
        res = None
        if text is not None:
            try:
                res = samples_from_text(
                    text, scrape_ms, self.target, honor_labels=sc.honor_labels,
                    honor_timestamps=sc.honor_timestamps, rules=sc.metric_relabel_configs, names=sc.names,
                    openmetrics="openmetrics" in content_type,
                )  # fmt: skip
            except ValueError as exc:
                log.warning("scrape of %s: malformed exposition: %s", sc.url, exc)
        samples = res.samples if res is not None else []
        out = samples + self.staleness.update(samples, scrape_ms)
        out += report_samples(self.target, scrape_ms, res is not None, duration_s,
                              res.scraped if res else 0, len(samples))  # fmt: skip
        return out, res is not None


async def scrape_once(client: Any, scraper: Scraper, scrape_ms: int) -> tuple[list[Sample], bool]:
    """(samples to ship, up) for one scrape started at `scrape_ms`."""
    sc = scraper.sc
    t0 = time.perf_counter()
    text: str | None = None
    ctype = ""
    try:
        resp = await client.get(sc.url, timeout=sc.timeout_s)
        resp.raise_for_status()
        text, ctype = resp.text, resp.headers.get("content-type", "")
    except Exception as exc:
        log.warning("scrape of %s failed: %r", sc.url, exc)
    return scraper.result(text, ctype, scrape_ms, time.perf_counter() - t0)


async def run_scrapes(
    sc: PrometheusScrapeConfig,
    emit: Callable[[list[Sample], bool], Awaitable[None]],
    schedule: ScrapeSchedule | None = None,
    client: Any = None,
) -> None:
    """Scrape `sc` on its fixed schedule forever, handing each scrape's samples (and up) to `emit`.

    `schedule` defaults to the target's jittered phase; a caller may pass another (e.g. to share a
    phase with another scraper). Waiting on `emit` never shifts the schedule: missed ticks are skipped.
    """
    import httpx

    scraper = Scraper(sc)
    schedule = schedule or ScrapeSchedule(sc.interval_s, jitter_offset(sc.url, sc.interval_s))
    own = client is None
    client = client or httpx.AsyncClient(**client_options(sc))
    try:
        while True:
            start = schedule.next_after(time.time())
            await asyncio.sleep(max(0.0, start - time.time()))
            samples, up = await scrape_once(client, scraper, round(start * 1000))
            await emit(samples, up)
    finally:
        if own:
            await client.aclose()


async def scrape_loop(shipper: Shipper, sc: PrometheusScrapeConfig) -> None:
    """The shipper's task for one target: `run_scrapes` into the metrics topic."""
    from logtide.shippers.harvester import send_with_retry

    assert shipper.ctx is not None
    counter = shipper.metrics.metric_samples.labels("prometheus")
    errors = shipper.metrics.scrape_errors.labels(sc.url)

    async def emit(samples: list[Sample], up: bool) -> None:
        if not up:
            errors.inc()
        records = encode(shipper.host, samples)
        try:
            await asyncio.wait_for(
                send_with_retry(shipper.ctx, shipper.metrics_topic, records, "prometheus"), sc.interval_s * 5
            )
            counter.inc(len(records))
        except TimeoutError:
            log.warning("scrape of %s dropped: output unavailable", sc.url)

    await run_scrapes(sc, emit)
