"""Templates of the catalog and filling their positional variables (R-S2)."""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Literal

_PLACEHOLDER = re.compile(r"\{\{(\d+)\}\}")

TemplateStatus = Literal["APPROVED", "FLAGGED", "PAUSED", "DISABLED", "PENDING", "REJECTED"]
# FLAGGED (low quality, not yet paused) may still be sent; every other status is refused (R-S2).
SENDABLE: frozenset[str] = frozenset({"APPROVED", "FLAGGED"})
# PAUSED is temporary (Meta pauses a low-quality template for 3 h, then 6 h; CLOUD-API.md §7): its messages
# are held, not refused, until a later status event un-pauses it or the hold limit passes.
HOLDABLE: frozenset[str] = frozenset({"PAUSED"})
# Meta's `message_template_status_update` event → the catalog status it leaves (CLOUD-API.md §5.5, §7).
STATUS_AFTER_EVENT: dict[str, TemplateStatus] = {
    "APPROVED": "APPROVED", "REINSTATED": "APPROVED", "UNPAUSED": "APPROVED", "FLAGGED": "FLAGGED", "PAUSED": "PAUSED",
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


def template_hold_kind(name: str, language: str) -> str:
    """The `held_by` of a message waiting for template `name`/`language` to be un-paused."""
    return f"template:{name}/{language}"


@dataclass(frozen=True, slots=True)
class TemplateGate:
    """What a queued template message does now: "send", "hold" until `until`, or "fail" with `reason`."""

    action: Literal["send", "hold", "fail"]
    reason: str | None = None
    until: datetime | None = None


def template_gate(*, name: str, language: str, status: str | None, queued_at: datetime, now: datetime,
                  max_hold: timedelta, recheck: timedelta) -> TemplateGate:
    """Whether a queued message of a template may go now (R-S2), given the catalog status at dispatch time.

    - APPROVED / FLAGGED (or a template no longer in the catalog's status table, `status` None): send.
    - PAUSED: hold ("held: template t/en paused") until `now + recheck`, but never past `queued_at +
      max_hold`; once `queued_at + max_hold <= now` it fails ("template t/en paused for longer than 24 h").
      A status event un-pausing the template releases it sooner.
    - any other status (DISABLED, REJECTED, PENDING …): fail ("template t/en is disabled").

    `max_hold` and `recheck` must be positive; raises ValueError otherwise.
    """
    if max_hold <= timedelta(0) or recheck <= timedelta(0):
        raise ValueError("max_hold and recheck must be positive")
    if status is None or status in SENDABLE:
        return TemplateGate("send")
    if status in HOLDABLE:
        deadline = queued_at + max_hold
        if deadline <= now:
            hours = max_hold.total_seconds() / 3600
            return TemplateGate("fail", f"template {name}/{language} {status.lower()} for longer than {hours:g} h")
        return TemplateGate("hold", f"held: template {name}/{language} {status.lower()}", min(now + recheck, deadline))
    return TemplateGate("fail", f"template {name}/{language} is {status.lower()}")
