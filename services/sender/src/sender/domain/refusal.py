"""Whether a command may be sent at all (R-S2 templates and variables, R-S7 invalid numbers), decided before
queueing."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

from sender.domain.templates import CannotRender, Template, check_send, not_found_reason


def refusal(*, account_id: str, account_known: bool, invalid_until: datetime | None, now: datetime,
            template_name: str | None, language: str | None, template: Template | None,
            parameters: Sequence[str], header_type: str | None = None,
            buttons: Sequence[tuple[int, str]] = ()) -> str | None:
    """The reason a command must not be sent, or None when it may be queued.

    `invalid_until` is when the number's invalid mark expires (None: not marked); an expired mark
    is ignored (R-S7). `template` is the account's WABA's template of that name and language (None: it has
    none: "template welcome (de) not found for account 1000…"). A template that is not APPROVED — paused,
    disabled, rejected … — is refused with its status ("template welcome (en_US) is paused", R-S2); so are
    body, header and button parameters that do not fit it (`header_type`, `buttons` as `check_send` takes them).
    """
    if not account_known:
        return f"unknown account {account_id}"
    if invalid_until is not None and invalid_until > now:
        return f"number marked invalid after an earlier failure, until {invalid_until.isoformat(timespec='seconds')}"
    if template_name is not None:
        if template is None:
            return not_found_reason(template_name, language or "", account_id)
        try:
            check_send(template, parameters=parameters, header_type=header_type, buttons=buttons)
        except CannotRender as exc:
            return str(exc)
    return None
