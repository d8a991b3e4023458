"""Parts of the record contracts shared by the msgspec fast decoders (`streams.fast_metric`,
`sinks.alerts.facts`): strict structs that accept a subset of what the pydantic models accept, with
the same values, so that anything else can be handed to the model to decide."""

from __future__ import annotations

from typing import Annotated, Literal

from msgspec import Meta, Struct

Int64 = Annotated[int, Meta(ge=-(2**63), le=2**63 - 1)]  # beyond 64 bits: the model decides


class EventInfoStruct(Struct, forbid_unknown_fields=True):
    """`EventInfo` (the ECS `event` object) of every record."""

    id: str
    original: str | None = None
    ingested: str | None = None
    dataset: str | None = None
    kind: Literal["event", "metric", "alert", "pipeline_error"] = "event"
    duration: Int64 | None = None
