"""The commands on `scrm.send-commands.v1`: "send this message from this account to this contact,
idempotency key K" (`SendMessage`) and "do not send the message K any more, if it still waits"
(`WithdrawMessage`). `parse_command` reads either."""

from __future__ import annotations

from datetime import time
from typing import Annotated, Literal

from pydantic import AfterValidator, Field, TypeAdapter, model_validator

from scrm_common.contracts.events import PLAIN, Phone, Preferences, StrictModel, Text128, Timestamp, _zone

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


class QuietHours(StrictModel):
    """R-S4: marketing may reach the contact only at local wall-clock times in [`start`, `end`) (an
    `end` before `start` crosses midnight)."""

    start: time = time(8, 0)
    end: time = time(22, 0)


class FrequencyCap(StrictModel):
    """R-S5: at most `limit` marketing messages per contact per rolling `window_days`, counted over all
    flows and broadcasts by what was sent or is in flight."""

    limit: Annotated[int, Field(ge=0, le=100)] = 3
    window_days: Annotated[int, Field(ge=1, le=90)] = 7


class Fatigue(StrictModel):
    """R-T4.5 (unread reminders) or R-T6.3 (cart reminders): a message of this kind is not sent while the
    contact's fatigue score is over `threshold`; the kind is paused for `pause_days` from then on."""

    rule: Literal["R-T4.5", "R-T6.3"]
    threshold: Annotated[float, Field(ge=0, le=100)]
    pause_days: Annotated[int, Field(ge=1, le=90)] = 7


class GatePolicy(StrictModel):
    """How the sender's send gate treats one message: its tenant's and flow's settings as of the decision.

    `quiet_hours_exempt`: the flow may send at any hour (R-T5 birthday; utility messages are exempt
    anyway) — a flag rather than a null `quiet_hours`, so a copy that leaves out null fields keeps its
    meaning. A command without a policy gets these defaults (SPEC.md's numbers).
    """

    quiet_hours: QuietHours = QuietHours()
    quiet_hours_exempt: bool = False
    frequency_cap: FrequencyCap = FrequencyCap()
    fatigue: Fatigue | None = None


class SendMessage(StrictModel):
    """Imperative: deliver one message; `idempotency_key` makes repeating it harmless.

    `expires_at` (UTC instant): from then on the message is not worth sending (R-T1.1: a welcome 15
    minutes after its event) — the send gate suppresses it as `EXPIRED` rather than send it late.
    `timezone`: the contact's IANA zone as the deciding service knows it (the sender's own record of the
    contact wins; else the number's country's zone). `preferences`: the person's stated preferences as the
    deciding service knows them (R-G4, R-S5; the sender's record of the number wins when it has any —
    this covers shops whose contact events name no phone). `policy`: the send gate's settings for it.
    """

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
    expires_at: Timestamp | None = None
    timezone: Annotated[str, PLAIN, AfterValidator(_zone)] | None = None
    preferences: Preferences | None = None
    policy: GatePolicy | None = None

    @model_validator(mode="after")
    def _one_body(self) -> SendMessage:
        if (self.template is None) == (self.text is None):
            raise ValueError("a send command carries exactly one of template or text")
        return self

    @property
    def kafka_key(self) -> str:
        """Commands are keyed by account so one sender instance paces each account."""
        return f"{self.tenant}:{self.account_id}"


class WithdrawMessage(StrictModel):
    """Imperative: the message decided earlier under `idempotency_key` is pointless now (a first purchase
    withdraws the pending welcome; a purchase the cart reminder waiting for 08:00). The sender drops it
    if it was not handed to the provider yet — suppressed with rule `WITHDRAWN` and `reason` — and a
    withdrawal that arrives before its send command keeps that command from ever being queued.
    Withdrawing a message already sent changes nothing.
    """

    action: Literal["withdraw"]
    idempotency_key: Annotated[str, Field(min_length=1, max_length=512)]
    tenant: Text128
    account_id: Text128 | None = None
    contact_key: Text128
    flow: Text128
    reason: Annotated[str, Field(min_length=1, max_length=500)]
    decided_at: Timestamp
    correlation_id: Annotated[str, Field(max_length=128)] | None = None

    @property
    def kafka_key(self) -> str:
        """Keyed like the send it withdraws (when its account is known), so it follows that send in order."""
        return f"{self.tenant}:{self.account_id or self.contact_key}"


Command = SendMessage | WithdrawMessage
_COMMAND: TypeAdapter[SendMessage | WithdrawMessage] = TypeAdapter(Command)


def parse_command(raw: bytes) -> SendMessage | WithdrawMessage:
    """A command from its JSON; raises `pydantic.ValidationError` (a `ValueError`) for anything else."""
    if b'"action"' in raw:
        return WithdrawMessage.model_validate_json(raw)
    return SendMessage.model_validate_json(raw)
