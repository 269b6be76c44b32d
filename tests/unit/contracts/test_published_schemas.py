"""The JSON Schemas in docs/schemas are the ones the code validates with."""

from __future__ import annotations

from pathlib import Path

import pytest

from scrm_common.contracts.events import EVENT_TYPES
from scrm_common.contracts.schemas import event_schemas, render

DOCS = Path(__file__).resolve().parents[3] / "docs" / "schemas"


def test_every_event_type_has_a_schema() -> None:
    assert sorted(event_schemas()) == sorted(EVENT_TYPES)


@pytest.mark.parametrize("kind", EVENT_TYPES)
def test_published_schema_is_current(kind: str) -> None:
    published = DOCS / f"{kind}.json"
    assert published.exists(), f"run: python -m scrm_common.contracts.schemas docs/schemas ({kind} missing)"
    assert published.read_text() == render(event_schemas()[kind]), "docs/schemas is stale; regenerate it"
