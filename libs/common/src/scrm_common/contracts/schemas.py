"""JSON Schema per event type, for shops that produce to `scrm.events.v1` directly.

`python -m scrm_common.contracts.schemas docs/schemas` writes one file per type.
"""

from __future__ import annotations

import json
import sys
import typing
from pathlib import Path
from typing import Any

from pydantic import BaseModel

from scrm_common.contracts.events import Event


def event_schemas() -> dict[str, dict[str, Any]]:
    """`{event type: JSON Schema}` for every member of the event union."""
    union = typing.get_args(Event)[0]
    out: dict[str, dict[str, Any]] = {}
    for model in typing.get_args(union):
        assert issubclass(model, BaseModel)
        kind = typing.get_args(model.model_fields["type"].annotation)[0]
        schema = model.model_json_schema()
        schema["$id"] = f"https://scrm.dev/schemas/events/{kind}.json"
        schema["title"] = kind
        out[kind] = schema
    return out


def render(schema: dict[str, Any]) -> str:
    return json.dumps(schema, indent=2, sort_keys=True) + "\n"


def main() -> None:
    target = Path(sys.argv[1] if len(sys.argv) > 1 else "docs/schemas")
    target.mkdir(parents=True, exist_ok=True)
    for kind, schema in event_schemas().items():
        (target / f"{kind}.json").write_text(render(schema))


if __name__ == "__main__":
    main()
