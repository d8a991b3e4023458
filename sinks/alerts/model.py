"""Alerts, label matchers and fingerprints: the vocabulary of the alert core (no I/O).

An alert is identified by its labels, as in Alertmanager: the fingerprint is a stable hash of the
sorted label pairs, so the same series, metric and severity always give the same alert.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Literal

from logtide.sinks.alerts.facts import AnomalyFacts

ALERTNAME = "LogtideAnomaly"

Op = Literal["=", "!=", "=~", "!~"]
_MATCHER = re.compile(r'^\s*([A-Za-z_][A-Za-z0-9_.]*)\s*(=~|!~|!=|=)\s*(.*?)\s*$')


def fingerprint(labels: dict[str, str]) -> str:
    """Stable 16-hex-digit hash of the sorted label pairs (order-independent)."""
    h = hashlib.sha256()
    for k in sorted(labels):
        h.update(k.encode())
        h.update(b"\xff")
        h.update(labels[k].encode())
        h.update(b"\xff")
    return h.hexdigest()[:16]


@dataclass(frozen=True, slots=True)
class Matcher:
    """One label matcher; regexes are anchored (full match), as in Alertmanager."""

    name: str
    op: Op
    value: str
    regex: re.Pattern[str] | None = field(default=None, compare=False, hash=False, repr=False)

    @classmethod
    def make(cls, name: str, op: Op, value: str) -> Matcher:
        rx = None
        if op in ("=~", "!~"):
            try:
                rx = re.compile(value)
            except re.error as exc:
                raise ValueError(f"bad regex {value!r}: {exc}") from None
            except (RecursionError, OverflowError) as exc:  # nested or repeated past what `re` can compile (fuzzing)
                raise ValueError(f"bad regex {value[:80]!r}...: too complex ({type(exc).__name__})") from None
        return cls(name, op, value, rx)

    @classmethod
    def parse(cls, text: str) -> Matcher:
        """`name=value`, `name!="value"`, `name=~"re"`, `name!~re`."""
        m = _MATCHER.match(text)
        if m is None:
            raise ValueError(f"not a matcher (name op value, op one of = != =~ !~): {text!r}")
        name, op, value = m.groups()
        if len(value) >= 2 and value[0] == value[-1] == '"':
            value = value[1:-1].replace('\\"', '"')
        return cls.make(name, op, value)  # type: ignore[arg-type]

    def matches(self, labels: dict[str, str]) -> bool:
        op = self.op
        if op == "=":
            return labels.get(self.name, "") == self.value
        if op == "!=":
            return labels.get(self.name, "") != self.value
        hit = self.regex.fullmatch(labels.get(self.name, "")) is not None  # type: ignore[union-attr]
        return hit if op == "=~" else not hit

    def __str__(self) -> str:
        return f'{self.name}{self.op}"{self.value}"'


def matches_all(matchers: tuple[Matcher, ...] | list[Matcher], labels: dict[str, str]) -> bool:
    for m in matchers:  # noqa: SIM110 -- a plain loop: this is the hot path
        if not m.matches(labels):
            return False
    return True


@dataclass(slots=True)
class Alert:
    """One alert's current state; times are epoch seconds (event or wall time, as injected).

    `source` is the latest record's facts: the annotations are formatted from it only when a
    notification is built (`copy`), not for every record."""

    labels: dict[str, str]
    annotations: dict[str, str]
    starts_at: float
    ends_at: float | None = None
    updated_at: float = 0.0
    generator_url: str = ""
    episode: str = ""
    fp: str = ""
    source: AnomalyFacts | None = field(default=None, repr=False, compare=False)
    _formatted: tuple[AnomalyFacts | None, dict[str, str]] = field(default=(None, {}), repr=False, compare=False)

    def __post_init__(self) -> None:
        if not self.fp:
            self.fp = fingerprint(self.labels)

    def resolved(self) -> bool:
        return self.ends_at is not None

    @property
    def status(self) -> Literal["firing", "resolved"]:
        return "resolved" if self.resolved() else "firing"

    def copy(self) -> Alert:
        src = self.source
        if src is None:
            ann = dict(self.annotations)
        else:
            if self._formatted[0] is not src:  # formatted once per record, however many notifications show it
                self._formatted = (src, alert_annotations(src))
            ann = dict(self._formatted[1])
        return Alert(dict(self.labels), ann, self.starts_at, self.ends_at,
                     self.updated_at, self.generator_url, self.episode, self.fp)


def iso(ts: float | None) -> str:
    """RFC 3339 in UTC; Alertmanager's zero time for an unset end."""
    if ts is None:
        return "0001-01-01T00:00:00Z"
    return datetime.fromtimestamp(ts, UTC).isoformat().replace("+00:00", "Z")


def alert_labels(a: AnomalyFacts, static: dict[str, str] | None = None) -> dict[str, str]:
    """Labels of the alert an anomaly raises: static labels, series labels, metric, stat, severity."""
    labels = dict(static or {})
    labels.update(a.series_labels)
    labels.update({"alertname": ALERTNAME, "metric": a.metric, "severity": a.severity})
    if a.stat is not None:
        labels["stat"] = a.stat
    return labels


def alert_annotations(a: AnomalyFacts) -> dict[str, str]:
    """logtide's own facts in the annotations: value, expected, band, score, window, context."""
    ann = {
        "summary": a.message[:1024],
        "value": f"{a.value:.6g}",
        "expected": f"{a.expected:.6g}",
        "band": f"[{a.band_lower:.6g}, {a.band_upper:.6g}]",
        "score": f"{a.score:.3f}",
        "series": a.series_key,
        "episode": a.episode_id,
    }
    if a.window_start is not None and a.window_end is not None:
        ann["window"] = f"{iso(a.window_start)}/{iso(a.window_end)}"
    if a.context:
        ann["context"] = " ".join(f"{v:.4g}" for v in a.context)
    return ann
