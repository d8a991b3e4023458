"""Encoding and decoding of events with orjson.

`decode` never raises on bad input: whatever cannot be decoded or validated comes back as a
`DeadLetter` that keeps the original bytes and says why, so a stage can route it and carry on.
"""

from __future__ import annotations

import base64
import re
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, TypeVar

import orjson
from logtide.schemas.ids import stable_id
from logtide.schemas.models import DeadLetter, DeadLetterInfo, DeadLetterSource, ErrorInfo, EventInfo
from pydantic import BaseModel, ValidationError

T = TypeVar("T", bound=BaseModel)
_NONFINITE_LITERAL = re.compile(r"[:,\[\s]-?(NaN|Infinity)\b")


@dataclass(frozen=True)
class Limits:
    """Bounds on what a decoder accepts; past them the record is dead-lettered, not parsed."""

    max_bytes: int = 1 << 20
    max_depth: int = 32
    dead_letter_keep_bytes: int = 64 << 10


DEFAULT_LIMITS = Limits()


class DecodeError(ValueError):
    """Why a record was rejected: a machine-readable type, a message and the offending field."""

    def __init__(self, type_: str, message: str, field: str | None = None) -> None:
        super().__init__(f"{type_}: {field + ': ' if field else ''}{message}")
        self.type = type_
        self.message = message
        self.field = field


def encode(event: BaseModel) -> bytes:
    """The wire form: ECS names (`@timestamp`), no nulls, UTC timestamps."""
    return orjson.dumps(event.model_dump(mode="json", by_alias=True, exclude_none=True))


def to_document(event: BaseModel) -> dict[str, Any]:
    """The JSON-ready dict of an event (what a sink indexes)."""
    return event.model_dump(mode="json", by_alias=True, exclude_none=True)


def _depth_exceeds(obj: Any, limit: int) -> bool:
    stack: list[tuple[Any, int]] = [(obj, 1)]
    while stack:
        node, depth = stack.pop()
        if isinstance(node, dict):
            children = node.values()
        elif isinstance(node, list):
            children = node
        else:
            continue
        if depth > limit:
            return True
        stack.extend((c, depth + 1) for c in children if isinstance(c, dict | list))
    return False


def parse_json(raw: bytes | str, limits: Limits = DEFAULT_LIMITS) -> Any:
    """orjson.loads with size, depth and UTF-8 checks (orjson refuses NaN and inf); raises DecodeError."""
    size = len(raw)
    if size > limits.max_bytes:
        raise DecodeError("too_large", f"{size} bytes exceeds the limit of {limits.max_bytes}")
    try:
        obj = orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        if isinstance(raw, bytes):
            try:
                raw.decode("utf-8")
            except UnicodeDecodeError as uexc:
                raise DecodeError("invalid_utf8", f"not valid UTF-8 at byte {uexc.start}") from None
        text = str(exc)
        if "depth limit" in text:
            raise DecodeError("too_deep", "nesting exceeds the JSON parser's limit") from None
        if "infinity" in text or _NONFINITE_LITERAL.search(
            raw if isinstance(raw, str) else raw.decode("utf-8")
        ):
            raise DecodeError("non_finite", f"NaN or infinite number ({text})") from None
        raise DecodeError("invalid_json", text) from None
    if _depth_exceeds(obj, limits.max_depth):
        raise DecodeError("too_deep", f"nesting deeper than {limits.max_depth} levels")
    return obj


def _validation_error(exc: ValidationError) -> DecodeError:
    first = exc.errors(include_url=False)[0]
    field = ".".join(str(p) for p in first["loc"]) or None
    kind = "missing_field" if first["type"] == "missing" else "validation"
    extra = f" (and {exc.error_count() - 1} more)" if exc.error_count() > 1 else ""
    return DecodeError(kind, f"{first['msg']}{extra}", field)


def validate(obj: Any, model: type[T]) -> T:
    """Validate a parsed object against a model; raises DecodeError naming the field."""
    if not isinstance(obj, dict):
        raise DecodeError("validation", f"expected a JSON object, got {type(obj).__name__}")
    try:
        return model.model_validate(obj)
    except ValidationError as exc:
        raise _validation_error(exc) from None


def decode_strict(raw: bytes | str, model: type[T], limits: Limits = DEFAULT_LIMITS) -> T:
    """Decode one record or raise DecodeError."""
    return validate(parse_json(raw, limits), model)


def decode(
    raw: bytes | str,
    model: type[T],
    *,
    source: DeadLetterSource | None = None,
    limits: Limits = DEFAULT_LIMITS,
) -> T | DeadLetter:
    """Decode one record; anything wrong with it comes back as a DeadLetter, never an exception."""
    try:
        return decode_strict(raw, model, limits)
    except DecodeError as err:
        src = source or DeadLetterSource(stage="decode")
        if src.expected_schema is None:
            src = src.model_copy(update={"expected_schema": getattr(model, "KIND", model.__name__)})
        return dead_letter(raw, err, src, limits)


def dead_letter(
    raw: bytes | str,
    err: DecodeError,
    source: DeadLetterSource,
    limits: Limits = DEFAULT_LIMITS,
    now: datetime | None = None,
) -> DeadLetter:
    """Keep the original (capped), the reason and where it came from."""
    data = raw.encode("utf-8", "surrogateescape") if isinstance(raw, str) else bytes(raw)
    kept = data[: limits.dead_letter_keep_bytes]
    return DeadLetter(
        timestamp=now or datetime.now(UTC),
        event=EventInfo(
            id=stable_id("dead_letter", source.stage, source.topic, source.partition, source.offset, data),
            original=kept.decode("utf-8", "replace"),
            kind="pipeline_error",
        ),
        logtide=DeadLetter.meta(),
        error=ErrorInfo(type=err.type, message=err.message, field=err.field),
        source=source,
        dead_letter=DeadLetterInfo(
            original_base64=base64.b64encode(kept).decode("ascii"),
            original_size=len(data),
            truncated=len(kept) < len(data),
        ),
    )
