"""The send command: "send this message from this account to this contact, idempotency key K"."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import Field, model_validator

from scrm_common.contracts.events import Phone, StrictModel, Text128, Timestamp

MessageCategory = Literal["utility", "marketing", "authentication", "service"]


class TemplateHeader(StrictModel):
    """The parameter of a template's header (CLOUD-API.md §2.4): a text variable, or the media of an
    image/video/document header by its public `link` (`filename` only for a document)."""

    type: Literal["text", "image", "video", "document"]
    text: Annotated[str, Field(min_length=1, max_length=60)] | None = None
    link: Annotated[str, Field(min_length=1, max_length=2048)] | None = None
    filename: Annotated[str, Field(min_length=1, max_length=240)] | None = None

    @model_validator(mode="after")
    def _one_value(self) -> TemplateHeader:
        if (self.type == "text") != (self.text is not None) or (self.type != "text") != (self.link is not None):
            raise ValueError("a text header carries `text`; a media header carries `link`")
        if self.filename is not None and self.type != "document":
            raise ValueError("only a document header carries `filename`")
        return self


class TemplateButton(StrictModel):
    """The parameter of one template button (CLOUD-API.md §2.4): `index` is the button's position (0-based);
    a `url` button's variable is the URL suffix, a `quick_reply` button's its payload, a `copy_code`
    button's the coupon code."""

    index: Annotated[int, Field(ge=0, le=9)]
    sub_type: Literal["url", "quick_reply", "copy_code"]
    parameter: Annotated[str, Field(min_length=1, max_length=2000)]


class TemplateMessage(StrictModel):
    """A pre-approved template with positional body parameters ({{1}}, {{2}}, …), and optionally the
    header's parameter and button parameters."""

    name: Text128
    language: Annotated[str, Field(min_length=2, max_length=16)]
    parameters: Annotated[list[Annotated[str, Field(max_length=1024)]], Field(max_length=32)] = []
    header: TemplateHeader | None = None
    buttons: Annotated[list[TemplateButton], Field(max_length=10)] = []


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
