"""Whether a command may be sent at all (R-S2 variables, R-S7 invalid numbers), decided before queueing."""

from __future__ import annotations

from sender.domain.templates import CannotRender, Template, render


def refusal(*, account_id: str, account_known: bool, number_invalid: bool, template_name: str | None,
            language: str | None, template: Template | None, parameters: list[str] | tuple[str, ...]) -> str | None:
    """The reason a command must not be sent, or None when it may be queued."""
    if not account_known:
        return f"unknown account {account_id}"
    if number_invalid:
        return "number marked invalid after an earlier failure"  # R-S7
    if template_name is not None:
        if template is None:
            return f"no template {template_name} in {language}"
        try:
            render(template, parameters)  # R-S2: a message whose variables cannot all be filled is not sent
        except CannotRender as exc:
            return str(exc)
    return None
