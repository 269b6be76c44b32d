"""Whether a command may be sent at all (R-S2 variables, R-S7 invalid numbers), decided before queueing."""

from __future__ import annotations

from dataclasses import replace
from datetime import datetime

from sender.domain.templates import HOLDABLE, CannotRender, Template, render


def refusal(*, account_id: str, account_known: bool, invalid_until: datetime | None, now: datetime,
            template_name: str | None, language: str | None, template: Template | None,
            parameters: list[str] | tuple[str, ...]) -> str | None:
    """The reason a command must not be sent, or None when it may be queued.

    `invalid_until` is when the number's invalid mark expires (None: not marked); an expired mark
    is ignored (R-S7). A disabled or rejected template is refused with its status (R-S2); a paused
    one is only checked for its variables and queued (the dispatcher holds it until un-paused).
    """
    if not account_known:
        return f"unknown account {account_id}"
    if invalid_until is not None and invalid_until > now:
        return f"number marked invalid after an earlier failure, until {invalid_until.isoformat(timespec='seconds')}"
    if template_name is not None:
        if template is None:
            return f"no template {template_name} in {language}"
        try:
            # R-S2: a message whose variables cannot all be filled is not sent
            render(replace(template, status="APPROVED") if template.status in HOLDABLE else template, parameters)
        except CannotRender as exc:
            return str(exc)
    return None
