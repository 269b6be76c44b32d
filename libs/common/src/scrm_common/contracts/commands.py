"""The send command: "send this message from this account to this contact, idempotency key K"."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import Field, model_validator

from scrm_common.contracts.events import Phone, StrictModel, Text128, Timestamp

MessageCategory = Literal["utility", "marketing", "authentication", "service"]


class TemplateMessage(StrictModel):
    """A pre-approved template with positional body parameters ({{1}}, {{2}}, …)."""

    name: Text128
    language: Annotated[str, Field(min_length=2, max_length=16)]
    parameters: Annotated[list[Annotated[str, Field(max_length=1024)]], Field(max_length=32)] = []


class SendMessage(StrictModel):
    """Imperative: deliver one message; `idempotency_key` makes repeating it harmless."""

    idempotency_key: Annotated[str, Field(min_length=1, max_length=512)]
    tenant: Text128
    account_id: Text128
    flow: Text128
    category: MessageCategory
    contact_key: Text128
    to: Phone
    template: TemplateMessage | None = None
    text: Annotated[str, Field(min_length=1, max_length=4096)] | None = None
    event_id: Text128
    event_occurred_at: Timestamp
    event_ingested_at: Timestamp | None = None
    decided_at: Timestamp
    correlation_id: Annotated[str, Field(max_length=128)] | None = None

    @model_validator(mode="after")
    def _one_body(self) -> SendMessage:
        if (self.template is None) == (self.text is None):
            raise ValueError("a send command carries exactly one of template or text")
        return self

    @property
    def kafka_key(self) -> str:
        """Commands are keyed by account so one sender instance paces each account."""
        return f"{self.tenant}:{self.account_id}"
