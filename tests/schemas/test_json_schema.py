"""The checked-in JSON Schema files are the public contract: they must match the models."""

from __future__ import annotations

import orjson
import pytest
from logtide.schemas.json_schema import JSON_DIR, render_all
from logtide.schemas.models import MODELS


def test_json_schema_files_match_models() -> None:
    rendered = render_all()
    assert set(rendered) == {f"{k}.schema.json" for k in MODELS}
    stale = [name for name, data in rendered.items() if (JSON_DIR / name).read_bytes() != data]
    assert not stale, f"regenerate with `python -m logtide.schemas.json_schema`: {stale}"


@pytest.mark.parametrize("kind", list(MODELS))
def test_schema_documents_name_ecs_fields(kind: str) -> None:
    doc = orjson.loads((JSON_DIR / f"{kind}.schema.json").read_bytes())
    assert "@timestamp" in doc["properties"]
    assert {"@timestamp", "event", "logtide"} <= set(doc["required"])
