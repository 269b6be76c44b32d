"""Message templates of a WhatsApp Business Account and checking a send against one (R-S2).

A template is what Meta's management endpoint lists (`GET /{waba_id}/message_templates`, CLOUD-API.md §2.4):
its name, language, category, status and components — an optional HEADER (TEXT with at most one `{{1}}`,
or IMAGE / VIDEO / DOCUMENT filled with a link at send time), the BODY with `{{1}}`, `{{2}}` …, an optional
FOOTER and BUTTONS (a URL button whose URL ends in `{{1}}` takes a suffix at send time).
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

_PLACEHOLDER = re.compile(r"\{\{(\d+)\}\}")

# FLAGGED (low quality, announced before a pause) is still APPROVED at Meta and may be sent (CLOUD-API.md §7);
# every other status — PAUSED, DISABLED, REJECTED, PENDING, DELETED … — is never sent (R-S2).
SENDABLE: frozenset[str] = frozenset({"APPROVED", "FLAGGED"})
# Meta's `message_template_status_update` event → the status it leaves (CLOUD-API.md §5.5, §7).
STATUS_AFTER_EVENT: dict[str, str] = {
    "APPROVED": "APPROVED", "REINSTATED": "APPROVED", "UNPAUSED": "APPROVED", "FLAGGED": "FLAGGED", "PAUSED": "PAUSED",
    "DISABLED": "DISABLED", "REJECTED": "REJECTED", "PENDING": "PENDING", "IN_APPEAL": "IN_APPEAL",
    "PENDING_DELETION": "PENDING_DELETION", "DELETED": "DELETED", "ARCHIVED": "ARCHIVED",
    "LIMIT_EXCEEDED": "LIMIT_EXCEEDED",
}
CATEGORIES = frozenset({"utility", "marketing", "authentication"})
MEDIA_HEADERS = frozenset({"IMAGE", "VIDEO", "DOCUMENT"})


def status_after_event(event: str | None) -> str | None:
    """The status a template status event leaves, or None for an event that changes none."""
    return STATUS_AFTER_EVENT.get((event or "").upper())


@dataclass(frozen=True, slots=True)
class Button:
    """One button of a template: Meta's `type` (URL, QUICK_REPLY, COPY_CODE, PHONE_NUMBER …), its text and,
    for a URL button, its URL (a trailing `{{1}}` is filled at send time)."""

    type: str
    text: str = ""
    url: str | None = None

    @property
    def takes_parameter(self) -> bool:
        """True for a URL button with a variable, a quick reply (its payload) and a copy-code button."""
        return (self.type == "URL" and self.url is not None and bool(_PLACEHOLDER.search(self.url))) or \
            self.type in ("QUICK_REPLY", "COPY_CODE")


@dataclass(frozen=True, slots=True)
class Template:
    """A template of a WABA: `body` with `{{1}}`, `{{2}}` … filled in order; header, footer and buttons."""

    name: str
    language: str
    category: str
    body: str
    status: str = "APPROVED"
    header_format: str | None = None  # TEXT | IMAGE | VIDEO | DOCUMENT
    header_text: str | None = None
    footer: str | None = None
    buttons: tuple[Button, ...] = ()
    template_id: str | None = None
    quality: str | None = None
    rejected_reason: str | None = None
    parameter_format: str = "POSITIONAL"

    @property
    def variable_count(self) -> int:
        """How many distinct body variables the template has."""
        return len(set(_PLACEHOLDER.findall(self.body)))

    @property
    def header_variable_count(self) -> int:
        """1 for a text header with a variable or a media header, else 0."""
        if self.header_format in MEDIA_HEADERS:
            return 1
        return len(set(_PLACEHOLDER.findall(self.header_text or "")))

    @property
    def sendable(self) -> bool:
        """Only an APPROVED (or FLAGGED, still approved) template is ever sent (R-S2)."""
        return self.status in SENDABLE

    def components(self) -> list[dict[str, Any]]:
        """Meta's `components` list for this template (HEADER, BODY, FOOTER, BUTTONS)."""
        out: list[dict[str, Any]] = []
        if self.header_format == "TEXT":
            out.append({"type": "HEADER", "format": "TEXT", "text": self.header_text or ""})
        elif self.header_format:
            out.append({"type": "HEADER", "format": self.header_format})
        out.append({"type": "BODY", "text": self.body})
        if self.footer:
            out.append({"type": "FOOTER", "text": self.footer})
        if self.buttons:
            out.append({"type": "BUTTONS", "buttons": [
                {"type": b.type, "text": b.text, **({"url": b.url} if b.url is not None else {})}
                for b in self.buttons]})
        return out


class BadTemplate(ValueError):
    """A listed or catalog template that cannot be read (no name, no body …)."""


def from_components(*, name: str, language: str, category: str, status: str, components: Sequence[Any],
                    template_id: str | None = None, quality: str | None = None, rejected_reason: str | None = None,
                    parameter_format: str | None = None) -> Template:
    """A template from Meta's fields and `components` list; raises BadTemplate when it has no body.

    `category` is stored in lower case; `status` upper case; unknown component types are ignored.
    """
    body: str | None = None
    header_format = header_text = footer = None
    buttons: list[Button] = []
    for component in components:
        if not isinstance(component, Mapping):
            continue
        kind = str(component.get("type", "")).upper()
        if kind == "BODY":
            body = str(component.get("text", ""))
        elif kind == "HEADER":
            header_format = str(component.get("format", "TEXT")).upper()
            header_text = str(component.get("text", "")) if header_format == "TEXT" else None
        elif kind == "FOOTER":
            footer = str(component.get("text", "")) or None
        elif kind == "BUTTONS":
            for raw in component.get("buttons") or ():
                if isinstance(raw, Mapping):
                    url = raw.get("url")
                    buttons.append(Button(str(raw.get("type", "")).upper(), str(raw.get("text", "")),
                                          str(url) if url is not None else None))
    if not name or not language:
        raise BadTemplate("a template needs a name and a language")
    if body is None:
        raise BadTemplate(f"template {name} ({language}) has no BODY component")
    return Template(name=name, language=language, category=category.lower(), body=body, status=status.upper(),
                    header_format=header_format, header_text=header_text, footer=footer, buttons=tuple(buttons),
                    template_id=template_id, quality=quality, rejected_reason=rejected_reason,
                    parameter_format=(parameter_format or "POSITIONAL").upper())


def from_catalog_entry(raw: Mapping[str, Any]) -> Template:
    """A template of the packaged catalog (`catalog/default_templates.json`): `name`, `language`, `category`,
    `status`, and either `components` (Meta's shape) or a plain `body` (with optional `header`, `footer`,
    `buttons` in Meta's shape). Raises BadTemplate for an entry without name, language or body."""
    components = raw.get("components")
    if components is None:
        components = []
        header = raw.get("header")
        if isinstance(header, Mapping):
            components.append({"type": "HEADER", **header})
        components.append({"type": "BODY", "text": raw.get("body")} if raw.get("body") is not None else {})
        if raw.get("footer"):
            components.append({"type": "FOOTER", "text": raw["footer"]})
        if raw.get("buttons"):
            components.append({"type": "BUTTONS", "buttons": raw["buttons"]})
    return from_components(name=str(raw.get("name") or ""), language=str(raw.get("language") or ""),
                           category=str(raw.get("category") or "utility"), status=str(raw.get("status") or "APPROVED"),
                           components=components)


class CannotRender(ValueError):
    """The message cannot be sent as asked; the reason is recorded, nothing is sent."""


def not_found_reason(name: str, language: str, account_id: str) -> str:
    """The reason a send of a template the account's WABA does not have fails."""
    return f"template {name} ({language}) not found for account {account_id}"


def status_reason(name: str, language: str, status: str) -> str | None:
    """Why a template of that status may not be sent ("template welcome (en_US) is paused"), or None (R-S2)."""
    if status in SENDABLE:
        return None
    return f"template {name} ({language}) is {status.lower().replace('_', ' ')}"


def unsendable_reason(template: Template) -> str | None:
    """Why `template` may not be sent now ("template welcome (en_US) is paused"), or None (R-S2)."""
    return status_reason(template.name, template.language, template.status)


def render(template: Template, parameters: Sequence[str]) -> str:
    """The body the customer will see; raises CannotRender when the template may not be sent or a body
    variable cannot be filled (R-S2)."""
    reason = unsendable_reason(template)
    if reason is not None:
        raise CannotRender(reason)
    return fill_body(template, parameters)


def fill_body(template: Template, parameters: Sequence[str]) -> str:
    """The body with its variables filled, whatever the status; raises CannotRender on a count mismatch,
    a gap in the numbering, or an empty or unfilled value."""
    numbers = sorted({int(n) for n in _PLACEHOLDER.findall(template.body)})
    if numbers != list(range(1, len(numbers) + 1)):
        raise CannotRender(f"template {template.name} numbers its variables with gaps: {numbers}")
    expected = template.variable_count
    if len(parameters) != expected:
        raise CannotRender(f"template {template.name} needs {expected} variables, got {len(parameters)}")
    for index, value in enumerate(parameters, start=1):
        if not value.strip() or "{{" in value:
            raise CannotRender(f"variable {{{{{index}}}}} of template {template.name} is empty or unfilled")
    return _PLACEHOLDER.sub(lambda m: parameters[int(m.group(1)) - 1], template.body)


def check_send(template: Template, *, parameters: Sequence[str], header_type: str | None = None,
               buttons: Sequence[tuple[int, str]] = ()) -> None:
    """Check a send's parameters against the template (R-S2: what cannot be filled is not sent).

    `parameters` are the body's; `header_type` the type of the header parameter given (text, image, video,
    document; None: none); `buttons` the (index, sub_type) of each button parameter given. Raises
    CannotRender when the template may not be sent (status), a body variable cannot be filled, the header
    needs a parameter of another type (or none), or a button parameter is missing or has no button to go to.
    """
    reason = unsendable_reason(template)
    if reason is not None:
        raise CannotRender(reason)
    fill_body(template, parameters)
    wanted_header = None
    if template.header_format in MEDIA_HEADERS:
        wanted_header = template.header_format.lower()
    elif template.header_variable_count:
        wanted_header = "text"
    if wanted_header != header_type:
        if wanted_header is None:
            raise CannotRender(f"template {template.name} has no header variable, got a {header_type} header")
        raise CannotRender(f"template {template.name} needs a {wanted_header} header parameter")
    given = dict(buttons)
    for index, sub_type in given.items():
        button = template.buttons[index] if index < len(template.buttons) else None
        if button is None or not button.takes_parameter or button.type.lower() != sub_type:
            raise CannotRender(f"template {template.name} has no {sub_type} button at index {index} taking a parameter")
    for index, button in enumerate(template.buttons):
        if button.type == "URL" and button.takes_parameter and index not in given:
            raise CannotRender(f"template {template.name} needs the URL parameter of button {index}")
