"""Host metrics (CPU, memory, disk, network, load) as `MetricSample`s on `metrics.raw`.

`collect` is a plain function of psutil readings so it can be tested without a loop; the loop sends
each round through the same output (with retries) as the logs. Metrics are samples, not a log:
a round that cannot be sent in time is replaced by the next one rather than queued without bound.
"""

from __future__ import annotations

import asyncio
import logging
import os
import time
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

import psutil
from logtide.shippers.events import metric_event, now_iso
from logtide.shippers.prometheus_scrape import ScrapeSchedule, jitter_offset

if TYPE_CHECKING:
    from logtide.shippers.shipper import Shipper

log = logging.getLogger(__name__)
_SKIP_FS = {
    "tmpfs",
    "devtmpfs",
    "overlay",
    "squashfs",
    "proc",
    "sysfs",
    "cgroup",
    "cgroup2",
    "devpts",
    "nsfs",
}


# (our name, kind, unit): Prometheus naming (units in the name, `_total` on counters, `_ratio` for 0-1).
# shippers/README.md has the table with node_exporter's nearest equivalents.
def collect(
    host: dict[str, Any], labels: dict[str, str] | None = None, ts: str | None = None
) -> list[tuple[bytes, bytes]]:
    """One round of host samples as (key, encoded MetricSample) records, stamped `ts` (default now)."""
    labels = dict(labels or {})
    ts = ts or now_iso()
    out: list[tuple[bytes, bytes]] = []

    def add(name: str, value: float, mtype: str = "gauge", unit: str | None = None, **extra: str) -> None:
        enc = metric_event(host, name, value, mtype, unit, {**labels, **extra}, ts, dataset="host")
        if enc is not None:
            key = f"{host['name']}/{name}".encode()
            out.append((key, enc))

    add("system_cpu_utilization_ratio", psutil.cpu_percent(interval=None) / 100.0, unit="ratio")
    times = psutil.cpu_times()
    for field in ("user", "system", "idle", "iowait", "nice", "irq", "softirq", "steal"):
        if hasattr(times, field):
            add("system_cpu_seconds_total", getattr(times, field), "counter", "seconds", mode=field)
    add("system_cpu_logical_count", float(psutil.cpu_count() or 0))
    load1, load5, load15 = os.getloadavg()
    add("system_load1", load1)
    add("system_load5", load5)
    add("system_load15", load15)
    mem = psutil.virtual_memory()
    add("system_memory_total_bytes", mem.total, unit="bytes")
    add("system_memory_used_bytes", mem.total - mem.available, unit="bytes")
    add("system_memory_used_ratio", (mem.total - mem.available) / mem.total if mem.total else 0.0, unit="ratio")
    swap = psutil.swap_memory()
    add("system_swap_used_bytes", swap.used, unit="bytes")
    seen: set[str] = set()
    for part in psutil.disk_partitions(all=False):
        if part.fstype in _SKIP_FS or part.mountpoint in seen:
            continue
        seen.add(part.mountpoint)
        try:
            usage = psutil.disk_usage(part.mountpoint)
        except OSError:
            continue
        mp = part.mountpoint
        add("system_filesystem_used_bytes", usage.used, unit="bytes", mountpoint=mp)
        add("system_filesystem_size_bytes", usage.total, unit="bytes", mountpoint=mp)
        add("system_filesystem_used_ratio", usage.percent / 100.0, unit="ratio", mountpoint=mp)
    io = psutil.disk_io_counters()
    if io is not None:
        add("system_disk_read_bytes_total", io.read_bytes, "counter", "bytes")
        add("system_disk_written_bytes_total", io.write_bytes, "counter", "bytes")
    for nic, c in psutil.net_io_counters(pernic=True).items():
        add("system_network_receive_bytes_total", c.bytes_recv, "counter", "bytes", device=nic)
        add("system_network_transmit_bytes_total", c.bytes_sent, "counter", "bytes", device=nic)
        add("system_network_receive_packets_total", c.packets_recv, "counter", device=nic)
        add("system_network_transmit_packets_total", c.packets_sent, "counter", device=nic)
        add("system_network_receive_errs_total", c.errin, "counter", device=nic)
        add("system_network_transmit_errs_total", c.errout, "counter", device=nic)
    return out


async def host_metrics_loop(shipper: Shipper) -> None:
    from logtide.shippers.harvester import send_with_retry

    cfg = shipper.cfg.host_metrics
    assert shipper.ctx is not None
    psutil.cpu_percent(interval=None)  # prime the CPU counter
    counter = shipper.metrics.metric_samples.labels("host")
    schedule = ScrapeSchedule(cfg.interval_s, jitter_offset(shipper.host["name"], cfg.interval_s))
    while True:
        start = schedule.next_after(time.time())  # a fixed schedule, as scrapes: no drift
        await asyncio.sleep(max(0.0, start - time.time()))
        ts = datetime.fromtimestamp(start, UTC).isoformat(timespec="milliseconds")
        try:
            records = await asyncio.to_thread(collect, shipper.host, cfg.labels, ts)
        except Exception:
            log.exception("host metrics collection failed")
            continue
        try:
            await asyncio.wait_for(
                send_with_retry(shipper.ctx, shipper.metrics_topic, records, "host_metrics"),
                cfg.interval_s * 5,
            )
            counter.inc(len(records))
        except TimeoutError:
            log.warning("host metrics round dropped: output unavailable")
