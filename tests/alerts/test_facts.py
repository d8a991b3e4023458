"""The fast anomaly decoder agrees with the full model: on valid records it gives the same facts,
and on records mutated at random (a field removed, replaced by another JSON value, an extra key) it
gives the same facts or the same dead letter (error type, message and field) as `schemas.decode`."""

from __future__ import annotations

import json
from typing import Any

import orjson
from hypothesis import given, settings
from hypothesis import strategies as st
from logtide.schemas import Anomaly, DeadLetter, decode
from logtide.sinks.alerts.facts import AnomalyFacts, decode_facts, facts_from_model, fast_facts

from tests.alerts.helpers import anomaly


def base_records() -> list[dict[str, Any]]:
    a = anomaly(at=120, severity="critical")
    with_context = orjson.loads(orjson.dumps(a.model_dump(mode="json", by_alias=True, exclude_none=True)))
    with_context["context"] = [{"@timestamp": "2026-11-26T09:59:00Z", "value": 1}, {"@timestamp":
                                                                                     "2026-11-26T10:00:00.5+01:00",
                                                                                     "value": 0.25}]
    with_context["service"] = {"name": "checkout", "environment": "prod"}
    with_context["host"] = {"name": "h1", "ip": ["10.0.0.1"]}
    old = anomaly(at=60, episode=None).model_dump(mode="json", by_alias=True, exclude_none=True)
    resolved = anomaly(at=180, resolved=True).model_dump(mode="json", by_alias=True, exclude_none=True)
    return [with_context, old, resolved]


def outcome(raw: bytes) -> AnomalyFacts | tuple[str, str, str | None]:
    got = decode_facts(raw)
    if isinstance(got, DeadLetter):
        return got.error.type, got.error.message, got.error.field
    return got


def reference(raw: bytes) -> AnomalyFacts | tuple[str, str, str | None]:
    a = decode(raw, Anomaly)
    if isinstance(a, DeadLetter):
        return a.error.type, a.error.message, a.error.field
    return facts_from_model(a)


json_value = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**70), 2**70) | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=8) | st.sampled_from(["2026-11-26T10:00:00Z", "2026-02-30T10:00:00Z", "1.5", "warning",
                                             "resolved", "anomaly", "2026-11-26 10:00:00Z", "2026-11-26T10:00:00"]),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=6), inner, max_size=3),
    max_leaves=6,
)


def paths(d: Any, prefix: tuple = ()) -> list[tuple]:
    out = [prefix] if prefix else []
    if isinstance(d, dict):
        for k, v in d.items():
            out += paths(v, (*prefix, k))
    elif isinstance(d, list):
        for i, v in enumerate(d):
            out += paths(v, (*prefix, i))
    return out


def mutate(d: Any, path: tuple, how: str, value: Any) -> Any:
    if len(path) == 1:
        if how == "delete":
            if isinstance(d, dict):
                d.pop(path[0], None)
            else:
                d.pop(path[0])
        elif how == "extra" and isinstance(d, dict):
            d[f"extra_{path[0]}"] = value
        else:
            d[path[0]] = value
        return d
    mutate(d[path[0]], path[1:], how, value)
    return d


@settings(max_examples=400, deadline=None)
@given(data=st.data(), which=st.integers(0, 2), how=st.sampled_from(["delete", "replace", "extra"]),
       value=json_value)
def test_fast_decoder_matches_the_model(data, which, how, value) -> None:
    rec = base_records()[which]
    assert fast_facts(orjson.dumps(rec)) is not None  # valid records take the fast path
    assert outcome(orjson.dumps(rec)) == reference(orjson.dumps(rec))
    path = data.draw(st.sampled_from(paths(rec)))
    raw = json.dumps(mutate(rec, path, how, value)).encode()
    assert outcome(raw) == reference(raw)


def test_garbage_and_deep_records_get_the_models_dead_letters() -> None:
    for raw in [b"{not json", b"[]", b"\xff\xfe", b'{"a":' * 40 + b"1" + b"}" * 40, b"", b"null"]:
        assert outcome(raw) == reference(raw)
        assert isinstance(decode_facts(raw), DeadLetter)


TRICKY = [None, True, 0, -1, -0.5, 0.5, 1, 1.5, 2**64, "1", "", "x", [], {}, ["a"], {"a": "b"},
          "2026-11-26T10:00:00Z", "2026-02-30T10:00:00Z", "2026-11-26T10:00:00", "warning", "resolved", "anomaly"]


def test_every_field_replaced_or_removed_by_tricky_values() -> None:
    for rec0 in base_records():
        for path in paths(rec0):
            for how, values in (("delete", [None]), ("replace", TRICKY), ("extra", [1])):
                for v in values:
                    raw = json.dumps(mutate(orjson.loads(orjson.dumps(rec0)), path, how, v)).encode()
                    assert outcome(raw) == reference(raw), (path, how, v)
