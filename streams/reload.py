"""Which `streams` settings a running worker takes over on reload, and handing them to the operators.

Live: what is read when a decision is made and changes no state's meaning — the detection gates
(threshold, critical score, episode resolve rules, the metric severity gates, on/off), the enrichment
tables (service rules, static labels, trace id patterns), the wall-clock skew limits, late-event
reporting and idle-series eviction. Each series keeps its detector state: only the gates move.
Everything else (topics, app id, partitions, windows and group_by, the detector and its params, the
rules, the state store, ports, batch sizes) shapes state or topology and needs a restart.
"""

from __future__ import annotations

from logtide.streams.config import StreamsConfig
from logtide.streams.enrich import Enricher
from logtide.streams.pipeline import Stateful, Stateless
from logtide.streams.validate import SkewPolicy

#: Key paths of the whole configuration a streams worker applies while running (or under which).
LIVE_KEYS = (
    "logging.level",
    "streams.detect.enabled",
    "streams.detect.threshold",
    "streams.detect.critical_score",
    "streams.detect.resolve_after_windows",
    "streams.detect.episode_max_quiet_windows",
    "streams.detect.metrics.warning_relative_change",
    "streams.detect.metrics.critical_relative_change",
    "streams.detect.metrics.young_seconds",
    "streams.services",
    "streams.static_labels",
    "streams.trace_id_patterns",
    "streams.max_future_skew_seconds",
    "streams.max_past_skew_seconds",
    "streams.late_report_seconds",
    "streams.series_evict_after_seconds",
)

#: The top-level sections a streams worker reads (changes elsewhere are other processes' business).
SECTIONS = ("kafka", "topics", "logging", "streams")


def apply_stateful(sf: Stateful, cfg: StreamsConfig) -> None:
    """New gates for windows closed from now on; series, windows and detector states stay as they are."""
    sf.cfg = cfg
    sf.detection.cfg = cfg.detect


def apply_stateless(sl: Stateless, cfg: StreamsConfig) -> None:
    """New enrichment tables and skew limits for records read from now on (source clocks stay)."""
    sl.cfg = cfg
    sl.policy = SkewPolicy(cfg.max_future_skew_seconds, cfg.max_past_skew_seconds)
    sl.enrich = Enricher(cfg, sl.enrich.geo)
