"""The template catalog: approved (or paused/disabled) templates keyed by (name, language)."""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

PLACEHOLDER = re.compile(r"\{\{\s*([A-Za-z0-9_]+)\s*\}\}")
STATUSES = ("APPROVED", "PAUSED", "DISABLED", "PENDING", "REJECTED")
CATEGORIES = ("marketing", "utility", "authentication")
MEDIA_HEADER_FORMATS = ("IMAGE", "DOCUMENT", "VIDEO")
BUTTON_TYPES = ("URL", "QUICK_REPLY", "COPY_CODE", "PHONE_NUMBER", "FLOW", "OTP", "CATALOG", "MPM")

ParameterFormat = Literal["POSITIONAL", "NAMED"]


def placeholders(text: str) -> tuple[str, ...]:
    """The distinct placeholder names of `text`, in order of first appearance."""
    seen: dict[str, None] = {}
    for match in PLACEHOLDER.finditer(text):
        seen.setdefault(match.group(1), None)
    return tuple(seen)


def render(text: str, values: Mapping[str, str]) -> str:
    """Fill `{{1}}` / `{{name}}` placeholders from `values` (unknown ones are left as they are)."""
    return PLACEHOLDER.sub(lambda m: values.get(m.group(1), m.group(0)), text)


def _ordered(names: tuple[str, ...], what: str) -> tuple[str, ...]:
    """Positional names sorted numerically, checked to be exactly 1..n as Meta requires."""
    numbers = sorted(int(n) for n in names)
    if numbers != list(range(1, len(numbers) + 1)):
        raise ValueError(f"{what}: positional placeholders must be {{{{1}}}}..{{{{n}}}}, got {names}")
    return tuple(str(n) for n in numbers)


def _format_of(names: Iterable[str]) -> ParameterFormat | None:
    kinds = {name.isdigit() for name in names}
    if len(kinds) > 1:
        raise ValueError("a template cannot mix named and positional placeholders")
    if not kinds:
        return None
    return "POSITIONAL" if kinds == {True} else "NAMED"


@dataclass(frozen=True, slots=True)
class TemplateButton:
    """One button of a template; a URL button may end in a `{{1}}` suffix filled at send time."""

    type: str
    text: str
    url: str | None = None

    @property
    def dynamic(self) -> bool:
        """True when the URL takes a parameter."""
        return self.url is not None and bool(PLACEHOLDER.search(self.url))

    @property
    def sub_type(self) -> str:
        """The send-time `sub_type` that addresses this button."""
        return self.type.lower()


@dataclass(frozen=True, slots=True)
class Template:
    """A template as the catalog knows it."""

    name: str
    language: str
    category: str
    status: str
    body: str
    header_format: str | None = None
    header_text: str | None = None
    footer: str | None = None
    buttons: tuple[TemplateButton, ...] = ()
    parameter_format: ParameterFormat = "POSITIONAL"
    body_params: tuple[str, ...] = field(default=())
    header_params: tuple[str, ...] = field(default=())

    def to_dict(self) -> dict[str, Any]:
        """The catalog JSON form of this template."""
        out: dict[str, Any] = {
            "name": self.name, "language": self.language, "category": self.category,
            "status": self.status, "body": self.body, "parameter_format": self.parameter_format,
        }
        if self.header_format == "TEXT":
            out["header"] = {"format": "TEXT", "text": self.header_text}
        elif self.header_format:
            out["header"] = {"format": self.header_format}
        if self.footer:
            out["footer"] = self.footer
        if self.buttons:
            out["buttons"] = [
                {"type": b.type, "text": b.text, **({"url": b.url} if b.url else {})} for b in self.buttons
            ]
        return out


def template_id(waba_id: str, name: str, language: str) -> str:
    """A template's id as Meta would give it: 15 digits, stable for (WABA, name, language)."""
    digest = hashlib.sha256(f"{waba_id}\x00{name}\x00{language}".encode()).digest()
    return str(10**14 + int.from_bytes(digest[:8], "big") % (9 * 10**14))


def graph_template(template: Template, waba_id: str) -> dict[str, Any]:
    """A template as `GET /{waba_id}/message_templates` lists it (Meta's `components` shape, category in
    upper case, a `quality_score`)."""
    components: list[dict[str, Any]] = []
    if template.header_format == "TEXT":
        components.append({"type": "HEADER", "format": "TEXT", "text": template.header_text or ""})
    elif template.header_format:
        components.append({"type": "HEADER", "format": template.header_format})
    components.append({"type": "BODY", "text": template.body})
    if template.footer:
        components.append({"type": "FOOTER", "text": template.footer})
    if template.buttons:
        components.append({"type": "BUTTONS", "buttons": [
            {"type": b.type, "text": b.text, **({"url": b.url} if b.url else {})} for b in template.buttons]})
    return {
        "name": template.name, "parameter_format": template.parameter_format, "components": components,
        "language": template.language, "status": template.status, "category": template.category.upper(),
        "id": template_id(waba_id, template.name, template.language),
        "quality_score": {"score": "GREEN" if template.status == "APPROVED" else "UNKNOWN"},
        "rejected_reason": "NONE",
    }


def parse_template(raw: Mapping[str, Any]) -> Template:
    """Read one catalog entry; raise ValueError when it is malformed."""
    try:
        name, language, body = str(raw["name"]), str(raw["language"]), str(raw["body"])
    except KeyError as exc:
        raise ValueError(f"template entry lacks {exc.args[0]!r}: {dict(raw)}") from None
    category = str(raw.get("category", "utility")).lower()
    status = str(raw.get("status", "APPROVED")).upper()
    if category not in CATEGORIES:
        raise ValueError(f"template {name}/{language}: unknown category {category!r}")
    if status not in STATUSES:
        raise ValueError(f"template {name}/{language}: unknown status {status!r}")
    header_format: str | None = None
    header_text: str | None = None
    header = raw.get("header")
    if isinstance(header, str):
        header_format, header_text = ("TEXT", header) if header.upper() not in MEDIA_HEADER_FORMATS else (
            header.upper(), None)
    elif isinstance(header, Mapping):
        header_format = str(header.get("format", "TEXT")).upper()
        header_text = str(header["text"]) if header_format == "TEXT" else None
    elif header is not None:
        raise ValueError(f"template {name}/{language}: bad header {header!r}")
    buttons = tuple(
        TemplateButton(type=str(b["type"]).upper(), text=str(b.get("text", "")), url=b.get("url"))
        for b in raw.get("buttons", ())
    )
    for button in buttons:
        if button.type not in BUTTON_TYPES:
            raise ValueError(f"template {name}/{language}: unknown button type {button.type!r}")
    body_names = placeholders(body)
    header_names = placeholders(header_text or "")
    fmt = _format_of((*body_names, *header_names)) or "POSITIONAL"
    if fmt == "POSITIONAL":
        body_names = _ordered(body_names, f"{name}/{language} body")
        header_names = _ordered(header_names, f"{name}/{language} header")
    declared = raw.get("parameter_format")
    if declared is not None and str(declared).upper() != fmt and (body_names or header_names):
        raise ValueError(f"template {name}/{language}: parameter_format {declared} contradicts its body")
    return Template(
        name=name, language=language, category=category, status=status, body=body,
        header_format=header_format, header_text=header_text, footer=raw.get("footer"), buttons=buttons,
        parameter_format=fmt, body_params=body_names, header_params=header_names,
    )


class TemplateCatalog:
    """Templates keyed by (name, language code); `en` and `en_US` are different languages."""

    def __init__(self, templates: Iterable[Template] = ()) -> None:
        self._by_key: dict[tuple[str, str], Template] = {}
        for template in templates:
            self.upsert(template)

    @classmethod
    def from_json(cls, text: str) -> TemplateCatalog:
        """Parse a JSON list of `{"name","language","category","status","body"}` entries."""
        data = json.loads(text)
        if not isinstance(data, list):
            raise ValueError("a template catalog is a JSON list")
        return cls(parse_template(entry) for entry in data)

    def get(self, name: str, language: str) -> Template | None:
        """The template, or None."""
        return self._by_key.get((name, language))

    def languages_of(self, name: str) -> list[str]:
        """The languages a template name exists in."""
        return sorted(lang for (n, lang) in self._by_key if n == name)

    def upsert(self, template: Template) -> None:
        """Add or replace a template."""
        self._by_key[(template.name, template.language)] = template

    def copy(self) -> TemplateCatalog:
        """An independent catalog with the same templates (templates are immutable)."""
        return TemplateCatalog(self._by_key.values())

    def all(self) -> list[Template]:
        """Every template, sorted by name then language."""
        return [self._by_key[key] for key in sorted(self._by_key)]

    def __len__(self) -> int:
        return len(self._by_key)
