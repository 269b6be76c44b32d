"""Templates of the catalog and filling their positional variables (R-S2)."""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Literal

_PLACEHOLDER = re.compile(r"\{\{(\d+)\}\}")

TemplateStatus = Literal["APPROVED", "FLAGGED", "PAUSED", "DISABLED", "PENDING", "REJECTED"]
# FLAGGED (low quality, not yet paused) may still be sent; every other status is refused (R-S2).
SENDABLE: frozenset[str] = frozenset({"APPROVED", "FLAGGED"})
# Meta's `message_template_status_update` event → the catalog status it leaves (CLOUD-API.md §5.5, §7).
STATUS_AFTER_EVENT: dict[str, TemplateStatus] = {
    "APPROVED": "APPROVED", "REINSTATED": "APPROVED", "FLAGGED": "FLAGGED", "PAUSED": "PAUSED",
    "DISABLED": "DISABLED", "REJECTED": "REJECTED", "PENDING": "PENDING",
    "PENDING_DELETION": "DISABLED", "DELETED": "DISABLED",
}


def status_after_event(event: str | None) -> TemplateStatus | None:
    """The catalog status a template status event leaves, or None for an event that changes none."""
    return STATUS_AFTER_EVENT.get((event or "").upper())


@dataclass(frozen=True, slots=True)
class Template:
    """An approved message template: body with `{{1}}`, `{{2}}` … filled in order."""

    name: str
    language: str
    category: str
    body: str
    status: TemplateStatus = "APPROVED"

    @property
    def variable_count(self) -> int:
        return len(set(_PLACEHOLDER.findall(self.body)))


class CannotRender(ValueError):
    """The message cannot be sent as asked; the reason is recorded, nothing is sent."""


def render(template: Template, parameters: list[str] | tuple[str, ...]) -> str:
    """The text the customer will see; raises CannotRender when a variable cannot be filled (R-S2)."""
    if template.status not in SENDABLE:
        raise CannotRender(f"template {template.name}/{template.language} is {template.status.lower()}")
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
