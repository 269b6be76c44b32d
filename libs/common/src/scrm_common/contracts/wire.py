"""What an event's JSON may be before its schema is applied: nesting depth, unique keys, plain text.

Every reader applies the same rules — ingest refuses a body that breaks one (422), a consumer
dead-letters a record that does (`envelope.decode_event`) — so nothing accepted at the door can be
poison further in:

- **Depth**: at most `MAX_DEPTH` levels of objects and arrays. The deepest valid request body is 6
  (batch → `events` → event → `data` → `items` → item); anything deeper can only be refused by the
  schema, and JSON nested hundreds deep exhausts the parser's recursion instead.
- **Unique keys**: an object naming one key twice is refused; JSON leaves its meaning open and Python's
  parser silently keeps the last value, which the sender may not have meant.
- **Plain text**: no control characters in any string or key — C0 except TAB, LF and CR, DEL, C1 — and
  no lone UTF-16 surrogate. PostgreSQL stores no NUL, a lone surrogate is not encodable as UTF-8, and
  the other controls are invisible in every place a name or message is shown.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from typing import Any

MAX_DEPTH = 10

# The control characters of the plain-text rule, as a character class body that Python's `re`, the Rust
# regex of pydantic-core and ECMA-262 (JSON Schema `pattern`) all read alike.
CONTROL_CLASS = r"\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f"
# `pattern` of every free-text string in the published JSON Schemas (surrogates cannot be written in JSON text).
PLAIN_TEXT_PATTERN = f"^[^{CONTROL_CLASS}]*$"
NOT_PLAIN = re.compile(f"[{CONTROL_CLASS}\ud800-\udfff]")


class JsonRefused(ValueError):
    """A JSON text broken or refused by a rule of this module; `path` names where (keys as given)."""

    def __init__(self, path: tuple[str, ...], reason: str) -> None:
        super().__init__(f"{'.'.join(path) or '(body)'}: {reason}")
        self.path = path
        self.reason = reason


class _DuplicateKeys(dict[str, Any]):
    """An object that named some keys more than once (only ever seen by `problems`, which refuses it)."""

    duplicates: tuple[str, ...] = ()


def _object(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    obj = dict(pairs)
    if len(obj) == len(pairs):
        return obj
    seen: set[str] = set()
    repeated: dict[str, None] = {}
    for key, _ in pairs:
        if key in seen:
            repeated[key] = None
        seen.add(key)
    flagged = _DuplicateKeys(obj)
    flagged.duplicates = tuple(repeated)
    return flagged


def loads(raw: bytes | str) -> Any:
    """Parse JSON text, keeping objects with a repeated key recognisable to `problems`.

    Raises JsonRefused (path ()) for text that is not JSON or that nests deeper than the parser's
    recursion allows; the other rules are checked by `problems` on the result.
    """
    try:
        return json.loads(raw, object_pairs_hook=_object)
    except RecursionError:
        raise JsonRefused((), f"nested deeper than {MAX_DEPTH} levels of objects and arrays") from None
    except ValueError as exc:  # JSONDecodeError, UnicodeDecodeError
        raise JsonRefused((), f"not valid JSON: {exc}") from None


def printable(text: str) -> str:
    """`text` with every character the plain-text rule forbids replaced by U+FFFD."""
    return NOT_PLAIN.sub("\ufffd", text)


def not_plain_reason(text: str) -> str | None:
    """Why `text` breaks the plain-text rule (naming the first bad character), or None when it is plain."""
    found = NOT_PLAIN.search(text)
    if found is None:
        return None
    char = found.group()
    if "\ud800" <= char <= "\udfff":
        return f"contains a lone UTF-16 surrogate (\\u{ord(char):04x}) at position {found.start()}, " \
               "which is not valid Unicode text"
    name = "NUL" if char == "\x00" else "a control character"
    return f"contains {name} (\\u{ord(char):04x}) at position {found.start()}; control characters " \
           "other than tab, line feed and carriage return are not accepted"


def problems(value: Any, *, depth: int = 1, path: tuple[str, ...] = ()) -> Iterator[tuple[tuple[str, ...], str]]:
    """Each place where a parsed JSON value (from `loads`) breaks a rule, as (path, reason), in document order.

    `depth` is the nesting level of `value` itself (1 for a whole body; more for a part of one). Paths
    name keys as given, with forbidden characters shown as U+FFFD; a value past `MAX_DEPTH` is reported
    once and not entered. Iterative: no input exhausts the stack.
    """
    stack: list[tuple[Any, tuple[str, ...], int]] = [(value, path, depth)]
    while stack:
        item, where, level = stack.pop()
        if isinstance(item, str):
            if (reason := not_plain_reason(item)) is not None:
                yield where, reason
            continue
        if not isinstance(item, dict | list):
            continue
        if level > MAX_DEPTH:
            yield where, f"nested deeper than {MAX_DEPTH} levels of objects and arrays"
            continue
        if isinstance(item, list):
            stack.extend((v, (*where, str(i)), level + 1) for i, v in reversed(list(enumerate(item))))
            continue
        for key in getattr(item, "duplicates", ()):
            yield (*where, printable(key)), "this key appears more than once in one object"
        children = []
        for key, child in item.items():
            if (reason := not_plain_reason(key)) is not None:
                yield (*where, printable(key)), f"field name {reason}"
                continue
            children.append((child, (*where, key), level + 1))
        stack.extend(reversed(children))


def first_problem(value: Any, *, depth: int = 1) -> JsonRefused | None:
    """The first rule `value` breaks (see `problems`) as a JsonRefused, or None."""
    for where, reason in problems(value, depth=depth):
        return JsonRefused(where, reason)
    return None


def loads_checked(raw: bytes | str) -> Any:
    """`loads`, then every rule of this module: the parsed value, or JsonRefused for the first rule broken."""
    value = loads(raw)
    if (refused := first_problem(value)) is not None:
        raise refused
    return value
