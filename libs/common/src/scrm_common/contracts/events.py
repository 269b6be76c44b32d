"""Event schemas of CONTRACT §2: a strict, discriminated union on `type`.

Unknown fields and wrong types are errors; phones are normalised to E.164. Free text is plain text
(no control characters: `wire`), and every time lies in a sane range (`Era`) — times past year 9999
minus a few days overflow the date arithmetic of every consumer.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from typing import Annotated, Any, Literal

from pydantic import (
    AfterValidator,
    AwareDatetime,
    BaseModel,
    ConfigDict,
    Field,
    GetCoreSchemaHandler,
    GetJsonSchemaHandler,
    Strict,
    TypeAdapter,
    ValidationInfo,
    model_validator,
)
from pydantic.json_schema import JsonSchemaValue
from pydantic_core import CoreSchema, core_schema

from scrm_common.contracts.wire import PLAIN_TEXT_PATTERN, not_plain_reason
from scrm_common.phones import InvalidPhoneNumber, is_iana_zone, to_e164


class StrictModel(BaseModel):
    """Base of every contract model: strict types, unknown fields rejected, immutable."""

    model_config = ConfigDict(strict=True, extra="forbid", frozen=True, allow_inf_nan=False)


def _phone(value: str) -> str:
    try:
        return to_e164(value)
    except InvalidPhoneNumber as exc:
        raise ValueError(str(exc)) from None


def _zone(value: str) -> str:
    if not is_iana_zone(value):
        raise ValueError("not an IANA time zone such as Europe/Berlin")
    return value


@dataclass(frozen=True, slots=True)
class _Rule:
    """A check after the type's own validation (with pydantic's ValidationInfo) and what the JSON Schema says of it."""

    check: Callable[[Any, ValidationInfo], Any]
    schema: tuple[tuple[str, str], ...]

    def __get_pydantic_core_schema__(self, source: Any, handler: GetCoreSchemaHandler) -> CoreSchema:
        return core_schema.with_info_after_validator_function(self.check, handler(source))

    def __get_pydantic_json_schema__(self, schema: CoreSchema, handler: GetJsonSchemaHandler) -> JsonSchemaValue:
        out = handler(schema)
        out.update(self.schema)
        return out


def _plain(value: str, _: ValidationInfo) -> str:
    if (reason := not_plain_reason(value)) is not None:
        raise ValueError(reason)
    return value


# Free text: the plain-text rule of `wire` (no control characters other than tab, line feed, carriage return).
PLAIN = _Rule(_plain, (("pattern", PLAIN_TEXT_PATTERN),))

# The sane range of times (R: bad input → precise error). Nothing a shop reports happened before 2000, and
# every consumer adds days or years to event times (a code valid 7 days, a 365-day value window, next
# birthday): 2100 keeps all of that far from year 9999, where Python's dates end and OverflowError begins.
EARLIEST = datetime(2000, 1, 1, tzinfo=UTC)
LATEST = datetime(2100, 1, 1, tzinfo=UTC)  # exclusive
# Birthdays: the oldest people alive were born after 1900; earlier dates are placeholders (0001-01-01).
EARLIEST_BIRTHDAY = date(1900, 1, 1)
# How far ahead of the time received a shop's clock may run (ingest passes `received_at` in the context).
CLOCK_SKEW = timedelta(hours=24)


def _iso(at: datetime) -> str:
    return at.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _received_at(info: ValidationInfo) -> datetime | None:
    context = info.context
    received = context.get("received_at") if isinstance(context, dict) else None
    return received if isinstance(received, datetime) else None


def _in_era(value: datetime, _: ValidationInfo) -> datetime:
    try:
        inside = EARLIEST <= value < LATEST
    except OverflowError:  # an offset that pushes year 1 or 9999 out of Python's range
        inside = False
    if not inside:
        raise ValueError(f"must be from {_iso(EARLIEST)} to before {_iso(LATEST)}")
    return value


def _occurred(value: datetime, info: ValidationInfo) -> datetime:
    received = _received_at(info)
    if received is None:
        return _in_era(value, info)
    latest = received + CLOCK_SKEW
    try:
        inside = EARLIEST <= value <= latest
    except OverflowError:
        inside = False
    if not inside:
        raise ValueError(f"must be from {_iso(EARLIEST)} to 24 hours after the time received ({_iso(latest)})")
    return value


def _birthday(value: date, info: ValidationInfo) -> date:
    received = _received_at(info)
    latest = (received + CLOCK_SKEW).date() if received is not None else LATEST.date() - timedelta(days=1)
    if not EARLIEST_BIRTHDAY <= value <= latest:
        upto = f"today ({latest.isoformat()} at the latest, allowing 24 hours for time zones and clock skew)" \
            if received is not None else latest.isoformat()
        raise ValueError(f"must be from {EARLIEST_BIRTHDAY.isoformat()} to {upto}")
    return value


_ERA = f"from {_iso(EARLIEST)} to before {_iso(LATEST)}"

PlainStr = Annotated[str, PLAIN]
Phone = Annotated[str, Field(min_length=3, max_length=32), PLAIN, AfterValidator(_phone)]
# A WhatsApp id as Meta gives it (`wa_id`, `from`, `recipient_id`): digits only, kept even when the
# phone library rejects the number (CLOUD-API.md §1: Mexico's 521…, Brazil's 8-digit mobiles …).
WaId = Annotated[str, Field(pattern=r"^[0-9]{5,20}$")]
# A business-scoped user id (BSUID, 2026), e.g. `US.13491208655302741918`.
UserId = Annotated[str, Field(min_length=1, max_length=128, pattern=r"^[A-Za-z0-9._:-]+$")]
Text128 = Annotated[str, Field(min_length=1, max_length=128), PLAIN]
Name = Annotated[str, Field(max_length=256), PLAIN]
Url = Annotated[str, Field(max_length=2048, pattern=r"^https?://[^\s\x00-\x1f\x7f-\x9f]+$")]
Currency = Annotated[str, Field(pattern=r"^[A-Z]{3}$")]
Money = Annotated[float, Field(ge=0, le=1e9)]
Timestamp = Annotated[AwareDatetime, Strict(False), _Rule(_in_era, (("description", f"ISO-8601 with offset, {_ERA}"),))]
# When the event happened; at ingest also at most CLOCK_SKEW after the time received.
OccurredAt = Annotated[AwareDatetime, Strict(False), _Rule(_occurred, (
    ("description", f"ISO-8601 with offset, {_ERA}; posted to ingest: at most 24 hours after the time received"),))]
Birthday = Annotated[date, Strict(False), _Rule(_birthday, (
    ("description", f"from {EARLIEST_BIRTHDAY.isoformat()} to today (posted to ingest: the date 24 hours after "
                    "the time received)"),))]
Scalar = PlainStr | int | float | bool | None


class Contact(StrictModel):
    """Who an event is about: identified by `external_id`, `phone`, WhatsApp `wa_id` or BSUID `user_id`.

    `name` is the shop's name for the person; `profile_name` is the WhatsApp profile name, kept apart
    and used only when the shop gave none. `wa_id` is the identity WhatsApp uses, which can differ
    from the shop's `phone` (CLOUD-API.md §1); both are aliases of one contact.
    """

    external_id: Text128 | None = None
    phone: Phone | None = None
    wa_id: WaId | None = None
    user_id: UserId | None = None
    name: Name | None = None
    profile_name: Name | None = None
    locale: Annotated[str, Field(pattern=r"^[a-z]{2,3}([-_][A-Za-z]{2,4})?$")] | None = None
    timezone: Annotated[str, PLAIN, AfterValidator(_zone)] | None = None
    birthday: Birthday | None = None

    @model_validator(mode="after")
    def _identified(self) -> Contact:
        if self.external_id is None and self.phone is None and self.wa_id is None and self.user_id is None:
            raise ValueError("a contact needs an external_id or a phone")
        return self

    @property
    def key(self) -> str:
        """The contact's key as the event names it: external id, else phone, else `+wa_id`, else user id."""
        return self.external_id or self.phone or (f"+{self.wa_id}" if self.wa_id else None) or self.user_id or ""


_HOURS = re.compile(r"^([01][0-9]|2[0-3]):([0-5][0-9])-([01][0-9]|2[0-4]):([0-5][0-9])$")


def _hours(value: str) -> str:
    found = _HOURS.match(value)
    if found is None or (found.group(3) == "24" and found.group(4) != "00"):
        raise ValueError("preferred hours are local `HH:MM-HH:MM`, e.g. `18:00-21:00` (an end of `24:00` is "
                         "midnight; an end before the start crosses midnight)")
    if found.group(1, 2) == found.group(3, 4):
        raise ValueError("preferred hours need a start different from the end")
    return value


class Preferences(BaseModel):
    """What the contact said about being contacted (R-G4, R-S5); the send gate honours the known keys.

    `max_promotions_per_week` / `max_promotions_per_month`: at most this many marketing messages in a
    rolling 7 / 30 days (0: none); `preferred_hours`: local `HH:MM-HH:MM` in which marketing may reach
    them (inside the quiet-hours window); `passive`: only one marketing message a month. Other keys
    are kept as plain scalars for segments and templates.
    """

    model_config = ConfigDict(strict=True, extra="allow", frozen=True, allow_inf_nan=False)

    max_promotions_per_week: Annotated[int, Field(ge=0, le=50)] | None = None
    max_promotions_per_month: Annotated[int, Field(ge=0, le=200)] | None = None
    preferred_hours: Annotated[str, PLAIN, AfterValidator(_hours)] | None = None
    passive: bool | None = None

    @model_validator(mode="after")
    def _scalar_extras(self) -> Preferences:
        extra = self.__pydantic_extra__ or {}
        if len(extra) + 4 > 50:
            raise ValueError("at most 50 preferences")
        for key, value in extra.items():
            if len(key) > 128 or not (value is None or isinstance(value, str | int | float | bool)):
                raise ValueError(f"preference {key[:40]!r} must be a string, number, boolean or null")
            if isinstance(value, str) and len(value) > 1024:
                raise ValueError(f"preference {key[:40]!r} is longer than 1024 characters")
        return self


class ContactData(StrictModel):
    opted_in: bool | None = None
    tags: Annotated[list[Text128], Field(max_length=50)] = []
    preferences: Preferences = Preferences()
    attributes: Annotated[dict[Text128, Scalar], Field(max_length=100)] = {}


class CartItem(StrictModel):
    sku: Text128
    name: Name
    category: Text128 | None = None
    price: Money
    quantity: Annotated[int, Field(ge=1, le=100_000)] = 1
    stock: Annotated[int, Field(ge=0)] | None = None
    image_url: Url | None = None


class OrderItem(StrictModel):
    sku: Text128
    name: Name
    category: Text128 | None = None
    price: Money
    quantity: Annotated[int, Field(ge=1, le=100_000)] = 1


class CartData(StrictModel):
    cart_id: Text128
    items: Annotated[list[CartItem], Field(max_length=500)]
    total: Money
    currency: Currency
    checkout_url: Url | None = None


class PaymentData(StrictModel):
    order_id: Text128
    amount: Money
    currency: Currency
    tax: Money = 0.0
    shipping: Money = 0.0
    region: Annotated[str, Field(min_length=2, max_length=8), PLAIN] | None = None
    items: Annotated[list[OrderItem], Field(max_length=500)] = []
    cart_id: Text128 | None = None


class ShipmentData(StrictModel):
    order_id: Text128
    status: Literal["shipped", "out_for_delivery", "delivered"]
    carrier: Name | None = None
    tracking_url: Url | None = None


class ReturnData(StrictModel):
    order_id: Text128
    amount: Money


class PriceChangedData(StrictModel):
    sku: Text128
    old_price: Money
    new_price: Money


class FeedbackData(StrictModel):
    rating: Annotated[int, Field(ge=1, le=5)]
    text: Annotated[str, Field(max_length=4096), PLAIN] | None = None


InboundType = Literal[
    "text", "image", "video", "audio", "voice", "document", "sticker", "reaction", "location", "contacts",
    "order", "interactive", "button", "unsupported", "unknown",
]
WamidText = Annotated[str, Field(max_length=256), PLAIN]
Details = Annotated[dict[Text128, Scalar], Field(max_length=32)]


class InboundData(StrictModel):
    """What the customer sent (CLOUD-API.md §5.4): any message type counts as a reply.

    `text` is what the customer wrote or chose (text body, caption, emoji of a reaction, button or
    list title …), None for a pure media message or an un-reaction. `reply_id` is a quick-reply
    button's payload or an interactive reply's id; `context_message_id` the wamid it answers (for a
    reaction: the message reacted to); `referral` the click-to-WhatsApp ad; `details` type-specific
    scalars (media id and mime type, coordinates, product count, error codes of `unsupported`).
    """

    type: InboundType = "text"
    text: Annotated[str, Field(max_length=4096), PLAIN] | None = None
    account_id: Text128 | None = None
    message_id: WamidText | None = None
    reply_id: Annotated[str, Field(max_length=1024), PLAIN] | None = None
    context_message_id: WamidText | None = None
    forwarded: bool | None = None
    referral: Details | None = None
    details: Details = {}

    @model_validator(mode="after")
    def _text_message_has_text(self) -> InboundData:
        if self.type == "text" and self.text is None:
            raise ValueError("a text message needs its text")
        return self


# The largest provider error code a reader must store (PostgreSQL `integer`).
MAX_ERROR_CODE = 2**31 - 1


class StatusData(StrictModel):
    """A message's status: from Meta's webhook (sent/delivered/read/failed) or the sender's own outcome.

    `idempotency_key` is the send's key (echoed as `biz_opaque_callback_data`); `pricing_category`
    Meta's pricing category (marketing, utility, authentication, service …); `category` the
    template category the platform sent it as.

    The sender's send gate adds two statuses of its own (never from Meta): `deferred` — not handed to
    the provider yet, it goes at `deferred_until` (UTC) at the earliest — and `suppressed` — it will
    never go; both name the `rule` that decided it (`R-S4` quiet hours, `R-S5` frequency cap, `R-S6`
    opt-out, `R-S7` invalid number, `WINDOW` 24 h window, `EXPIRED`, `WITHDRAWN`, `META-131049`,
    `R-T4.5` / `R-T6.3` fatigue …) and say why in `error_reason`.
    """

    message_id: WamidText | None = None
    status: Literal["sent", "delivered", "read", "failed", "deferred", "suppressed"]
    # Meta's codes are small integers; the bound keeps every reader's 32-bit integer column safe.
    error_code: int | None = Field(default=None, ge=0, le=MAX_ERROR_CODE)
    error_reason: Annotated[str, Field(max_length=512), PLAIN] | None = None
    idempotency_key: Annotated[str, Field(max_length=512), PLAIN] | None = None
    flow: Text128 | None = None
    account_id: Text128 | None = None
    category: Text128 | None = None
    pricing_category: Text128 | None = None
    pricing_type: Text128 | None = None
    rule: Text128 | None = None
    deferred_until: Timestamp | None = None

    @model_validator(mode="after")
    def _gate_outcome_has_rule(self) -> StatusData:
        if self.status in ("deferred", "suppressed") and self.rule is None:
            raise ValueError(f"a {self.status} status names the send-gate rule that decided it")
        if (self.status == "deferred") != (self.deferred_until is not None):
            raise ValueError("`deferred_until` is given exactly for a deferred status")
        return self


class MarketingPreferenceData(StrictModel):
    """The customer stopped or resumed marketing messages, or signed up (`user_preferences`, 131050).

    `source` says where it was learned: `user_preferences` (Meta's webhook), `error_131050`
    (a marketing template failed because the user stopped marketing messages) or `keyword` (the
    customer's whole message was a stop or start word such as STOP, Stopp, START — R-S6).
    """

    category: Text128 = "marketing_messages"
    value: Literal["stop", "resume", "signup"]
    detail: Annotated[str, Field(max_length=512), PLAIN] | None = None
    source: Literal["user_preferences", "error_131050", "keyword"] = "user_preferences"
    account_id: Text128 | None = None


class NumberChangedData(StrictModel):
    """The customer moved WhatsApp to a new number (`system` `user_changed_number`); the old stays an alias."""

    old_wa_id: WaId
    new_wa_id: WaId
    account_id: Text128 | None = None
    detail: Annotated[str, Field(max_length=512), PLAIN] | None = None


class Restriction(StrictModel):
    """One restriction on a WhatsApp Business Account; `expires_at` None means until lifted."""

    type: Text128
    expires_at: Timestamp | None = None


class AccountUpdateData(StrictModel):
    """`account_update` / `phone_number_quality_update` / `business_capability_update` for an account.

    `account_id` is the phone number id when Meta names one; `waba_id` the business account.
    `event` is Meta's event name (ACCOUNT_RESTRICTION, DISABLED_UPDATE, ACCOUNT_VIOLATION,
    THROUGHPUT_UPGRADE …); `restrictions` with their expiry; `ban_state` (e.g. DISABLE, REINSTATE).
    """

    field: Text128
    account_id: Text128 | None = None
    waba_id: Text128 | None = None
    event: Text128 | None = None
    restrictions: Annotated[list[Restriction], Field(max_length=32)] = []
    ban_state: Text128 | None = None
    quality: Text128 | None = None
    messaging_limit: Text128 | None = None
    detail: Annotated[str, Field(max_length=1024), PLAIN] | None = None


class TemplateUpdateData(StrictModel):
    """`message_template_status_update` / `_quality_update` / `template_category_update`.

    `event` is the new status (APPROVED, REJECTED, PAUSED, DISABLED, FLAGGED, REINSTATED …) for a
    status update; `quality` (GREEN, YELLOW, RED, UNKNOWN) for a quality update; `category` the new
    category (and `previous_category`) for a category update.
    """

    field: Text128
    waba_id: Text128 | None = None
    template_id: Text128 | None = None
    name: Text128 | None = None
    language: Annotated[str, Field(max_length=16), PLAIN] | None = None
    event: Text128 | None = None
    reason: Annotated[str, Field(max_length=1024), PLAIN] | None = None
    quality: Text128 | None = None
    previous_quality: Text128 | None = None
    category: Text128 | None = None
    previous_category: Text128 | None = None


class AccountRegistrationData(StrictModel):
    """The sender's record of a WhatsApp account (phone number id) a tenant owns.

    `account.registered` says the tenant (the record's `tenant` header) owns `account_id` from now on,
    with its WABA and display name (sent again on every change); `account.removed` says it no longer
    does. Ingest routes Meta's webhooks by them; the trigger-engine learns which accounts a tenant has.
    """

    account_id: Text128
    waba_id: Text128 | None = None
    display_name: Annotated[str, Field(max_length=256), PLAIN] | None = None
    registered_at: Timestamp | None = None


class LinkClickData(StrictModel):
    """A tracked link was followed (ingest's `GET /l/{code}`, R-T6.5, R-R4): `link_id` is the short code, `url`
    where it led (with its `utm_*` parameters). The message it was in, when known: its `idempotency_key`, `flow`,
    `campaign` (utm_campaign) and `content` (utm_content: the stage or the link's part of the message);
    `kind` is `tracked` or `resume` (a signed one-click cart resume link)."""

    link_id: Text128
    url: Url
    idempotency_key: Annotated[str, Field(max_length=512), PLAIN] | None = None
    flow: Text128 | None = None
    campaign: Text128 | None = None
    content: Text128 | None = None
    kind: Literal["tracked", "resume"] | None = None


class _Event(StrictModel):
    event_id: Text128
    occurred_at: OccurredAt
    contact: Contact


class ContactCreated(_Event):
    type: Literal["contact.created"]
    data: ContactData = ContactData()


class ContactUpdated(_Event):
    type: Literal["contact.updated"]
    data: ContactData = ContactData()


class CartUpdated(_Event):
    type: Literal["cart.updated"]
    data: CartData


class PaymentSucceeded(_Event):
    type: Literal["payment.succeeded"]
    data: PaymentData


class PaymentFailed(_Event):
    type: Literal["payment.failed"]
    data: PaymentData


class ShipmentUpdated(_Event):
    type: Literal["shipment.updated"]
    data: ShipmentData


class OrderReturned(_Event):
    type: Literal["order.returned"]
    data: ReturnData


class ProductPriceChanged(_Event):
    """A product's price changed (R-T6.2). About a product, not a person: `contact` is optional (and ignored)."""

    type: Literal["product.price_changed"]
    contact: Contact | None = None  # type: ignore[assignment]
    data: PriceChangedData


class FeedbackSubmitted(_Event):
    type: Literal["feedback.submitted"]
    data: FeedbackData


class MessageInbound(_Event):
    type: Literal["message.inbound"]
    data: InboundData


class MessageStatus(_Event):
    """A status names its message; its recipient may be unknown (BSUID only, or unreadable)."""

    type: Literal["message.status"]
    contact: Contact | None = None  # type: ignore[assignment]
    data: StatusData


class MarketingPreferenceChanged(_Event):
    type: Literal["contact.marketing_preference_changed"]
    data: MarketingPreferenceData


class ContactNumberChanged(_Event):
    """`contact` names the old identity (old `wa_id`); `data.new_wa_id` is where the person now is."""

    type: Literal["contact.number_changed"]
    data: NumberChangedData


class _AccountEvent(StrictModel):
    """An event about a WhatsApp account or template, not about a contact."""

    event_id: Text128
    occurred_at: OccurredAt
    contact: None = None


class AccountUpdated(_AccountEvent):
    type: Literal["account.updated"]
    data: AccountUpdateData


class TemplateUpdated(_AccountEvent):
    type: Literal["template.updated"]
    data: TemplateUpdateData


class AccountRegistered(_AccountEvent):
    type: Literal["account.registered"]
    data: AccountRegistrationData


class AccountRemoved(_AccountEvent):
    type: Literal["account.removed"]
    data: AccountRegistrationData


class LinkClicked(_Event):
    type: Literal["link.clicked"]
    data: LinkClickData


Event = Annotated[
    ContactCreated
    | ContactUpdated
    | CartUpdated
    | PaymentSucceeded
    | PaymentFailed
    | ShipmentUpdated
    | OrderReturned
    | ProductPriceChanged
    | FeedbackSubmitted
    | MessageInbound
    | MessageStatus
    | LinkClicked
    | MarketingPreferenceChanged
    | ContactNumberChanged
    | AccountUpdated
    | TemplateUpdated
    | AccountRegistered
    | AccountRemoved,
    Field(discriminator="type"),
]

EVENT_ADAPTER: TypeAdapter[Event] = TypeAdapter(Event)
EVENT_TYPES: tuple[str, ...] = (
    "contact.created", "contact.updated", "cart.updated", "payment.succeeded", "payment.failed",
    "shipment.updated", "order.returned", "product.price_changed", "feedback.submitted",
    "message.inbound", "message.status", "link.clicked", "contact.marketing_preference_changed",
    "contact.number_changed", "account.updated", "template.updated", "account.registered", "account.removed",
)
# Produced by the platform (from Meta's webhooks, the sender, the redirect); refused from shop keys.
PLATFORM_PRODUCED: frozenset[str] = frozenset({
    "message.status", "link.clicked", "contact.marketing_preference_changed", "contact.number_changed",
    "account.updated", "template.updated", "account.registered", "account.removed",
})


def parse_event(raw: Any, *, received_at: datetime | None = None) -> Event:
    """Validate one decoded JSON object as an event; raises pydantic.ValidationError.

    `received_at` (aware; ingest's clock) adds the checks only the door can make: `occurred_at` at most
    CLOCK_SKEW after it, a birthday no later than its date plus CLOCK_SKEW. Readers further in omit it.
    """
    context = {"received_at": received_at} if received_at is not None else None
    return EVENT_ADAPTER.validate_python(raw, context=context)


def event_json_schema() -> dict[str, Any]:
    """The JSON Schema of the event union, for shops producing to Kafka directly."""
    return EVENT_ADAPTER.json_schema()
