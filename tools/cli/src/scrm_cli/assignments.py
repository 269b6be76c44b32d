"""`key=value` arguments (`scrm flows set`, `scrm settings set`) into the JSON object a PATCH sends."""

from __future__ import annotations

import json
from typing import Any


class BadAssignment(ValueError):
    """An argument that is not a usable `key=value`: the message names the argument and why."""


def parse_value(text: str) -> Any:
    """The value as JSON when it parses (`true`, `3`, `2.5`, `null`, `[1,2]`, `{"a":1}`, `"42"`), else the text
    itself as a string (`order_confirmation`, `Europe/Berlin`, `09:00`)."""
    try:
        return json.loads(text)
    except ValueError:
        return text


def parse_assignments(items: list[str]) -> dict[str, Any]:
    """`["enabled=false", "templates.de=order_confirmation"]` → `{"enabled": False, "templates": {"de": …}}`.

    A dotted key builds nested objects. Raises BadAssignment for an argument without `=`, an empty key or key
    part, the same key twice, or a key set both as a value and as an object (`a=1 a.b=2`).
    """
    if not items:
        raise BadAssignment("nothing to set: give at least one key=value")
    result: dict[str, Any] = {}
    for item in items:
        key, sep, raw = item.partition("=")
        key = key.strip()
        if not sep or not key:
            raise BadAssignment(f"{item!r} is not key=value")
        parts = key.split(".")
        if any(not p for p in parts):
            raise BadAssignment(f"{item!r}: the key {key!r} has an empty part")
        node = result
        for depth, part in enumerate(parts[:-1]):
            child = node.setdefault(part, {})
            if not isinstance(child, dict):
                raise BadAssignment(f"{item!r}: {'.'.join(parts[:depth + 1])!r} is already set to a value")
            node = child
        if parts[-1] in node:
            raise BadAssignment(f"{item!r}: {key!r} is already set")
        node[parts[-1]] = parse_value(raw)
    return result
