"""JSON Schema documents for every contract: the public description of each topic's records.

`python -m logtide.schemas.json_schema` rewrites `schemas/json/`; a test fails when the checked-in files
drift from the models.
"""

from __future__ import annotations

import sys
from pathlib import Path

import orjson
from logtide.schemas.models import MODELS

JSON_DIR = Path(__file__).parent / "json"


def render_all() -> dict[str, bytes]:
    """File name -> canonical JSON Schema bytes for each model."""
    out = {}
    for kind, model in MODELS.items():
        schema = model.model_json_schema(by_alias=True, mode="validation")
        schema["$schema"] = "https://json-schema.org/draft/2020-12/schema"
        schema["$id"] = f"https://logtide.dev/schemas/{kind}.schema.json"
        out[f"{kind}.schema.json"] = (
            orjson.dumps(schema, option=orjson.OPT_INDENT_2 | orjson.OPT_SORT_KEYS) + b"\n"
        )
    return out


def write_all(directory: Path = JSON_DIR) -> list[Path]:
    directory.mkdir(parents=True, exist_ok=True)
    written = []
    for name, data in render_all().items():
        path = directory / name
        path.write_bytes(data)
        written.append(path)
    return written


if __name__ == "__main__":
    for p in write_all():
        sys.stdout.write(f"wrote {p}\n")
