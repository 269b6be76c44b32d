"""`key=value` arguments (`scrm flows set`, `scrm settings set`) into the JSON object a PATCH sends."""

from __future__ import annotations

import json
import math
from typing import Any


class BadAssignment(ValueError):
    """An argument that is not a usable `key=value`: the message names the argument and why."""


class _NotFinite(Exception):  # not a ValueError: `parse_value` must not take it for "not JSON"
    pass


def _no_constant(name: str) -> Any:
    raise _NotFinite(name)


def _finite_float(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):
        raise _NotFinite(text)
    return value


def loads_finite(text: str) -> Any:
    """`json.loads`, refusing what JSON cannot carry although Python reads it: BadAssignment for `NaN`,
    `Infinity`, `-Infinity` or a number too large for a float (`1e999`); ValueError for text not JSON."""
    try:
        return json.loads(text, parse_constant=_no_constant, parse_float=_finite_float)
    except _NotFinite as exc:
        raise BadAssignment(f"{exc} is not a finite number (JSON has no NaN or Infinity)") from None


def parse_value(text: str) -> Any:
    """The value as JSON when it parses (`true`, `3`, `2.5`, `null`, `[1,2]`, `{"a":1}`, `"42"`), else the text
    itself as a string (`order_confirmation`, `Europe/Berlin`, `09:00`).

    Raises BadAssignment for a number JSON cannot carry, anywhere in the value: `NaN`, `Infinity`, `-Infinity`
    (which Python's json reads) or one too large for a float (`1e999`).
    """
    try:
        return loads_finite(text)
    except BadAssignment:
        raise
    except ValueError:
        return text


def _is_identifier_key(part: str) -> bool:
    """Keys whose values are identifiers (`account_id`, `default_account_id`): text even when all digits, as
    WhatsApp's phone number ids are."""
    return part == "id" or part.endswith("_id")


def parse_assignments(items: list[str]) -> dict[str, Any]:
    """`["enabled=false", "templates.de=order_confirmation"]` → `{"enabled": False, "templates": {"de": …}}`.

    A dotted key builds nested objects. The value of an identifier key (`…_id`) is text unless it is `null`.
    Raises BadAssignment for an argument without `=`, an empty key or key
    part, the same key twice, a key set both as a value and as an object (`a=1 a.b=2`), or a value that is
    not a finite number where it is one (`NaN`, `Infinity`, `1e999`).
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
        if _is_identifier_key(parts[-1]) and raw.strip() != "null" and not raw.strip().startswith('"'):
            node[parts[-1]] = raw.strip()  # `account_id=100000000000002` is an id, not a number
            continue
        try:
            node[parts[-1]] = parse_value(raw)
        except BadAssignment as exc:
            raise BadAssignment(f"{item!r}: {exc}") from None
    return result
