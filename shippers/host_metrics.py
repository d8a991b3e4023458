"""Host metrics (CPU, memory, disk, network, load) as `MetricSample`s on `metrics.raw`.

`collect` is a plain function of psutil readings so it can be tested without a loop; the loop sends
each round through the same output (with retries) as the logs. Metrics are samples, not a log:
a round that cannot be sent in time is replaced by the next one rather than queued without bound.
"""

from __future__ import annotations

import asyncio
import logging
import os
from typing import TYPE_CHECKING, Any

import psutil
from logtide.shippers.events import metric_event, now_iso

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


def collect(host: dict[str, Any], labels: dict[str, str] | None = None) -> list[tuple[bytes, bytes]]:
    """One round of host samples as (key, encoded MetricSample) records."""
    labels = dict(labels or {})
    ts = now_iso()
    out: list[tuple[bytes, bytes]] = []

    def add(name: str, value: float, mtype: str = "gauge", unit: str | None = None, **extra: str) -> None:
        enc = metric_event(host, name, value, mtype, unit, {**labels, **extra}, ts, dataset="host")
        if enc is not None:
            key = f"{host['name']}/{name}".encode()
            out.append((key, enc))

    add("system.cpu.total.pct", psutil.cpu_percent(interval=None) / 100.0, unit="percent")
    times = psutil.cpu_times()
    for field in ("user", "system", "idle", "iowait"):
        if hasattr(times, field):
            add(f"system.cpu.{field}.seconds", getattr(times, field), "counter", "s")
    add("system.cpu.cores", float(psutil.cpu_count() or 0))
    load1, load5, load15 = os.getloadavg()
    add("system.load.1", load1)
    add("system.load.5", load5)
    add("system.load.15", load15)
    mem = psutil.virtual_memory()
    add("system.memory.total", mem.total, unit="byte")
    add("system.memory.used.bytes", mem.total - mem.available, unit="byte")
    add(
        "system.memory.used.pct",
        (mem.total - mem.available) / mem.total if mem.total else 0.0,
        unit="percent",
    )
    swap = psutil.swap_memory()
    add("system.swap.used.bytes", swap.used, unit="byte")
    seen: set[str] = set()
    for part in psutil.disk_partitions(all=False):
        if part.fstype in _SKIP_FS or part.mountpoint in seen:
            continue
        seen.add(part.mountpoint)
        try:
            usage = psutil.disk_usage(part.mountpoint)
        except OSError:
            continue
        add("system.filesystem.used.bytes", usage.used, unit="byte", mount=part.mountpoint)
        add("system.filesystem.total", usage.total, unit="byte", mount=part.mountpoint)
        add("system.filesystem.used.pct", usage.percent / 100.0, unit="percent", mount=part.mountpoint)
    io = psutil.disk_io_counters()
    if io is not None:
        add("system.diskio.read.bytes", io.read_bytes, "counter", "byte")
        add("system.diskio.write.bytes", io.write_bytes, "counter", "byte")
    for nic, c in psutil.net_io_counters(pernic=True).items():
        add("system.network.in.bytes", c.bytes_recv, "counter", "byte", interface=nic)
        add("system.network.out.bytes", c.bytes_sent, "counter", "byte", interface=nic)
        add("system.network.in.packets", c.packets_recv, "counter", interface=nic)
        add("system.network.out.packets", c.packets_sent, "counter", interface=nic)
        add("system.network.in.errors", c.errin, "counter", interface=nic)
        add("system.network.out.errors", c.errout, "counter", interface=nic)
    return out


async def host_metrics_loop(shipper: Shipper) -> None:
    from logtide.shippers.harvester import send_with_retry

    cfg = shipper.cfg.host_metrics
    assert shipper.ctx is not None
    psutil.cpu_percent(interval=None)  # prime the CPU counter
    counter = shipper.metrics.metric_samples.labels("host")
    while True:
        await asyncio.sleep(cfg.interval_s)
        try:
            records = await asyncio.to_thread(collect, shipper.host, cfg.labels)
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
