"""Sharding the alert work across `logtide alerts` instances (pure).

An alert belongs to shard `crc32(values of the shard_by labels) % shards`. Every group holds alerts
of one shard only when its `group_by` contains the shard_by labels, and an inhibition rule only
relates alerts of one shard when its `equal` does; `check` enforces both, naming the key path. So
each shard's groups, inhibition and notification log are decided by one instance (the one the Kafka
group assigns that partition of the notification-log topic), without talking to the others.
"""

from __future__ import annotations

import zlib
from dataclasses import dataclass

import msgspec
from logtide.sinks.alerts.config import AlertsConfig
from logtide.sinks.alerts.facts import AnomalyFacts
from logtide.sinks.alerts.model import ALERTNAME
from logtide.sinks.alerts.routing import Route, build_route


class _ProbeSeries(msgspec.Struct):
    metric: str
    labels: dict[str, str] = {}


class _Probe(msgspec.Struct):
    """Just what an alert's labels are made of; everything else in the record is skipped unread."""

    series: _ProbeSeries
    severity: str
    labels: dict[str, str] = {}


_probe = msgspec.json.Decoder(_Probe)


@dataclass(frozen=True)
class Sharding:
    shards: int
    shard_by: tuple[str, ...]
    static: tuple[tuple[str, str], ...] = ()

    @classmethod
    def from_config(cls, cfg: AlertsConfig) -> Sharding:
        return cls(cfg.shards, tuple(cfg.shard_by), tuple(sorted(cfg.static_labels.items())))

    def of_labels(self, labels: dict[str, str]) -> int:
        """The shard of an alert (or of a group: its labels include the shard_by labels)."""
        if self.shards == 1:
            return 0
        key = "\xff".join(labels.get(k, "") for k in self.shard_by)
        return zlib.crc32(key.encode()) % self.shards

    def of_facts(self, f: AnomalyFacts) -> int:
        """The shard of the alert an anomaly record raises (its labels as `alert_labels` makes them)."""
        if self.shards == 1:
            return 0
        own = {"alertname": ALERTNAME, "metric": f.metric, "severity": f.severity}
        if f.stat is not None:
            own["stat"] = f.stat
        out = []
        static = dict(self.static)
        for k in self.shard_by:
            v = own.get(k)
            if v is None:
                v = f.series_labels.get(k)
            if v is None:
                v = static.get(k, "")
            out.append(v)
        return zlib.crc32("\xff".join(out).encode()) % self.shards


    def probe(self, raw: bytes) -> int | None:
        """The shard of a record read cheaply from its bytes (labels only, nothing validated), so an
        instance skips other shards' records without decoding them; None when it cannot tell."""
        if self.shards == 1:
            return 0
        try:
            p = _probe.decode(raw)
        except (msgspec.ValidationError, msgspec.DecodeError):
            return None
        own = {"alertname": ALERTNAME, "metric": p.series.metric, "severity": p.severity}
        stat = p.labels.get("stat")
        if stat is not None:
            own["stat"] = stat
        static = dict(self.static)
        out = []
        for k in self.shard_by:
            v = own.get(k)
            if v is None:
                v = p.series.labels.get(k)
            if v is None:
                v = static.get(k, "")
            out.append(v)
        return zlib.crc32("\xff".join(out).encode()) % self.shards


def check(cfg: AlertsConfig) -> None:
    """With more than one shard, every route must group by the shard_by labels and every inhibition
    rule must compare them (`equal`); raises ValueError naming the key path otherwise."""
    if cfg.shards == 1:
        return
    need = set(cfg.shard_by)

    def walk(r: Route, path: str) -> None:
        if not r.group_all and not need <= set(r.group_by):
            raise ValueError(f"{path}.group_by: with alerts.shards > 1 every route groups by the shard_by labels "
                             f"{sorted(need)} (missing {sorted(need - set(r.group_by))})")
        for i, c in enumerate(r.routes):
            walk(c, f"{path}.routes[{i}]")

    walk(build_route(cfg.route), "alerts.route")
    for i, rule in enumerate(cfg.inhibit_rules):
        if not need <= set(rule.equal):
            raise ValueError(f"alerts.inhibit_rules[{i}].equal: with alerts.shards > 1 it must include the "
                             f"shard_by labels {sorted(need)} (missing {sorted(need - set(rule.equal))})")
