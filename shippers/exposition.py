"""A fast reader of the Prometheus text exposition format (0.0.4), with prometheus-client as the fallback.

prometheus-client's parser walks every character in Python (about 0.2 s per 10,000 samples here),
which bounds a scrape's throughput. The common shape of a line — a name, labels whose values hold no
backslash, quote or brace, a value and an optional timestamp — is read with two regular expressions;
a document with anything else (escapes, OpenMetrics) is read whole by prometheus-client instead, so
both paths give the same samples. Family types follow the format: `# TYPE name kind` types `name`
(and `_sum`/`_count`/`_bucket` for histograms, `_sum`/`_count` for summaries); any other sample is
untyped. Names are kept as exposed (Prometheus stores them so), never rewritten.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import NamedTuple

_SAMPLE = re.compile(r"([a-zA-Z_:][a-zA-Z0-9_:]*)[ \t]*(?:\{([^}]*)\})?[ \t]+(\S+)(?:[ \t]+(-?[0-9]+))?[ \t]*")
_LABELS_OK = re.compile(r'(?:[ \t]*[a-zA-Z_][a-zA-Z0-9_]*[ \t]*=[ \t]*"[^"\\{}]*"[ \t]*,?)*[ \t]*')
_LABEL = re.compile(r'([a-zA-Z_][a-zA-Z0-9_]*)[ \t]*=[ \t]*"([^"]*)"')
_KINDS = frozenset({"counter", "gauge", "histogram", "summary", "untyped"})
_SUFFIXES = {"histogram": ("_bucket", "_sum", "_count"), "summary": ("", "_sum", "_count")}


class RawSample(NamedTuple):
    name: str
    labels: dict[str, str]
    value: float
    timestamp_s: float | None
    kind: str  # counter, gauge, histogram, summary or untyped
    unit: str | None


class Fallback(Exception):
    """A line the fast path does not read: the caller reads the document with prometheus-client."""


def fast_samples(text: str) -> list[RawSample]:
    """The samples of a text-format document; raises `Fallback` on a line outside the common shape."""
    out: list[RawSample] = []
    append = out.append
    allowed: dict[str, str] = {}
    sample_match = _SAMPLE.fullmatch
    labels_ok = _LABELS_OK.fullmatch
    label_iter = _LABEL.findall
    for line in text.splitlines():
        if not line or line[0] == "#":
            parts = line.split(None, 3)
            if len(parts) >= 3 and parts[1] in ("TYPE", "HELP"):
                name = parts[2]
                if parts[1] == "TYPE":
                    kind = parts[3].strip() if len(parts) > 3 else "untyped"
                    if kind not in _KINDS:
                        raise Fallback(line)
                    suffixes = _SUFFIXES.get(kind, ("",))
                    allowed = {name + s: kind for s in suffixes}
                elif name not in allowed:
                    allowed = {}
            continue
        m = sample_match(line)
        if m is None:
            if not line.strip():
                continue
            raise Fallback(line)
        name, lab, value, ts = m.groups()
        labels: dict[str, str] = {}
        if lab:
            if labels_ok(lab) is None:
                raise Fallback(line)
            labels = dict(label_iter(lab))
        try:
            v = float(value)
        except ValueError:
            raise Fallback(line) from None
        append(RawSample(name, labels, v, int(ts) / 1000 if ts else None, allowed.get(name, "untyped"), None))
    return out


def client_samples(text: str, openmetrics: bool) -> Iterator[RawSample]:
    """The same through prometheus-client's parsers (escapes, OpenMetrics); ValueError if malformed."""
    if openmetrics:
        from prometheus_client.openmetrics.parser import text_string_to_metric_families as parse
    else:
        from prometheus_client.parser import text_string_to_metric_families as parse
    for family in parse(text):
        kind = "untyped" if family.type in ("unknown", "untyped") else family.type
        if kind not in ("counter", "gauge", "histogram", "summary", "untyped"):
            kind = "gauge"  # gaugehistogram, info, stateset: read as gauges
        for s in family.samples:
            ts = None if s.timestamp is None else float(s.timestamp)  # OpenMetrics gives a Timestamp
            yield RawSample(s.name, {k: str(v) for k, v in s.labels.items()}, float(s.value), ts, kind,
                            family.unit or None)  # fmt: skip


def parse_exposition(text: str, openmetrics: bool = False) -> list[RawSample]:
    """Every sample of one exposition document; ValueError if it is malformed."""
    if not openmetrics:
        try:
            return fast_samples(text)
        except Fallback:
            pass
    try:
        return list(client_samples(text, openmetrics))
    except (IndexError, KeyError, TypeError, OverflowError, AttributeError) as exc:
        # prometheus-client's parsers raise these on some malformed documents (found by fuzzing)
        raise ValueError(f"malformed exposition: {type(exc).__name__}: {exc}") from None
