"""The one place logtide touches aiokafka's internals, with the versions it was checked against:
the codec levels (below), `append_records` (a batch filled without a Python call per record) and
`topic_errors` (metadata for named topics only, never creating them; used by `kafka_preflight`).

aiokafka compresses lz4 at level 9 (LZ4HC) and gzip at 9, with no option to change it. Level 9
costs ~7x the CPU of lz4's fast mode for ~20% better ratio; on the shipper's hot path that is the
difference between being CPU-bound in compression or not (librdkafka, Filebeat and Vector use the
fast mode). The codec functions are module globals of aiokafka's record builders (`aiokafka.codec`,
`aiokafka.record.default_records` and its C twin), so the level is process-wide.
"""

from __future__ import annotations

import functools
from collections.abc import Sequence
from typing import Any

import aiokafka

# Versions whose codec globals were read and found as patched below (pyproject allows >=0.11,<0.15).
CHECKED_VERSIONS = ("0.11.", "0.12.", "0.13.", "0.14.")
assert aiokafka.__version__.startswith(CHECKED_VERSIONS), (
    f"aiokafka {aiokafka.__version__}: shippers/aiokafka_compat.py was checked against "
    f"{', '.join(v + 'x' for v in CHECKED_VERSIONS)}; read aiokafka/codec.py and record/default_records "
    "again before allowing it"
)

from aiokafka.partitioner import murmur2  # noqa: E402 - after the version check

DEFAULT_LEVELS = {"lz4": 1, "gzip": 6}


def append_records(batch: Any, records: Sequence[tuple[bytes | None, bytes]], start: int = 0) -> int:
    """Append `records[start:]` to an aiokafka `BatchBuilder` (from `producer.create_batch()`) until it
    is full; returns the index of the first record not appended (len(records): all fitted).

    `BatchBuilder.append` costs a Python call, keyword parsing and a serializer check per record;
    this calls its record builder directly and keeps its relative offset, as `append` does. Batches
    must come from a producer without key/value serializers (ours has none).
    """
    assert batch._key_serializer is None and batch._value_serializer is None
    if batch._closed:
        return start
    add = batch._builder.append
    offset = batch._relative_offset
    i, n = start, len(records)
    while i < n:
        key, value = records[i]
        if add(offset, None, key=key, value=value, headers=_NO_HEADERS) is None:
            batch.close()
            break
        offset += 1
        i += 1
    batch._relative_offset = offset
    return i


_NO_HEADERS: list[Any] = []


class _MetadataNoAutoCreate:
    """`MetadataRequest(topics, allow_auto_topic_creation=False)` held to versions 4 and up: older
    versions cannot say "do not create", and naming a topic would create it on many brokers."""

    def __new__(cls, topics: list[str]) -> Any:
        from aiokafka.protocol.metadata import MetadataRequest

        class NoAutoCreate(MetadataRequest):
            _CLASSES = tuple(c for c in MetadataRequest._CLASSES if c.API_VERSION >= 4)

        return NoAutoCreate(topics, allow_auto_topic_creation=False)


async def topic_errors(consumer: Any, topics: list[str]) -> dict[str, int] | None:
    """Kafka's error code for each of `topics` (0 usable, 3 unknown, 29 not authorised), from a metadata
    request for those topics only over a started consumer's connections; None when the broker is too
    old for such a request (the caller lists the cluster's topics instead).

    Listing every topic costs a shared or large cluster dearly: with 5,000 topics on the local broker
    it took ~0.8 s and 0.1 s of CPU at every start of every process.
    """
    client = consumer._client
    try:
        request = _MetadataNoAutoCreate(list(topics))
        response = await client.send(client.get_random_node(), request)
    except NotImplementedError:  # Metadata v4 unsupported by the broker
        return None
    return {t[1]: t[0] for t in response.topics}


def set_compression_levels(levels: dict[str, int]) -> None:
    """Compress with these levels from now on (process-wide); idempotent."""
    from aiokafka import codec
    from aiokafka.record import default_records as py_records

    try:
        from aiokafka.record._crecords import default_records as c_records
    except ImportError:  # pure-Python build
        c_records = None
    for name, level in levels.items():
        fn = getattr(codec, f"{name}_encode", None)
        assert fn is not None, f"aiokafka {aiokafka.__version__} has no codec.{name}_encode"
        fn = getattr(fn, "func", fn)  # already patched: wrap the original
        patched = (
            functools.partial(fn, level=level)
            if name == "lz4"
            else functools.partial(fn, compresslevel=level)
        )
        for mod in (codec, py_records, c_records):
            if mod is not None and hasattr(mod, f"{name}_encode"):
                setattr(mod, f"{name}_encode", patched)


__all__ = ["CHECKED_VERSIONS", "DEFAULT_LEVELS", "append_records", "murmur2", "set_compression_levels", "topic_errors"]
