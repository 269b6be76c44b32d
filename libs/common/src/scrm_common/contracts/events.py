"""Event schemas of CONTRACT §2: a strict, discriminated union on `type`.

Unknown fields and wrong types are errors; phones are normalised to E.164.
"""

from __future__ import annotations

from datetime import date
from typing import Annotated, Any, Literal

from pydantic import (
    AfterValidator,
    AwareDatetime,
    BaseModel,
    ConfigDict,
    Field,
    Strict,
    TypeAdapter,
    model_validator,
)

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


Phone = Annotated[str, Field(min_length=3, max_length=32), AfterValidator(_phone)]
Text128 = Annotated[str, Field(min_length=1, max_length=128)]
Name = Annotated[str, Field(max_length=256)]
Url = Annotated[str, Field(max_length=2048, pattern=r"^https?://\S+$")]
Currency = Annotated[str, Field(pattern=r"^[A-Z]{3}$")]
Money = Annotated[float, Field(ge=0, le=1e9)]
Timestamp = Annotated[AwareDatetime, Strict(False)]
Scalar = str | int | float | bool | None


class Contact(StrictModel):
    """Who an event is about: identified by `external_id` or `phone`."""

    external_id: Text128 | None = None
    phone: Phone | None = None
    name: Name | None = None
    locale: Annotated[str, Field(pattern=r"^[a-z]{2,3}([-_][A-Za-z]{2,4})?$")] | None = None
    timezone: Annotated[str, AfterValidator(_zone)] | None = None
    birthday: Annotated[date, Strict(False)] | None = None

    @model_validator(mode="after")
    def _identified(self) -> Contact:
        if self.external_id is None and self.phone is None:
            raise ValueError("a contact needs an external_id or a phone")
        return self

    @property
    def key(self) -> str:
        """The contact's key within its tenant: external id when known, else phone."""
        return self.external_id or self.phone or ""


class ContactData(StrictModel):
    opted_in: bool | None = None
    tags: Annotated[list[Text128], Field(max_length=50)] = []
    preferences: Annotated[dict[Text128, Scalar], Field(max_length=50)] = {}
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
    region: Annotated[str, Field(min_length=2, max_length=8)] | None = None
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
    text: Annotated[str, Field(max_length=4096)] | None = None


class InboundData(StrictModel):
    text: Annotated[str, Field(max_length=4096)]
    account_id: Text128 | None = None
    message_id: Annotated[str, Field(max_length=256)] | None = None


class StatusData(StrictModel):
    message_id: Annotated[str, Field(max_length=256)] | None = None
    status: Literal["sent", "delivered", "read", "failed"]
    error_code: int | None = None
    error_reason: Annotated[str, Field(max_length=512)] | None = None
    idempotency_key: Annotated[str, Field(max_length=512)] | None = None
    flow: Text128 | None = None
    account_id: Text128 | None = None
    category: Text128 | None = None


class LinkClickData(StrictModel):
    link_id: Text128
    url: Url


class _Event(StrictModel):
    event_id: Text128
    occurred_at: Timestamp
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
    type: Literal["product.price_changed"]
    data: PriceChangedData


class FeedbackSubmitted(_Event):
    type: Literal["feedback.submitted"]
    data: FeedbackData


class MessageInbound(_Event):
    type: Literal["message.inbound"]
    data: InboundData


class MessageStatus(_Event):
    type: Literal["message.status"]
    data: StatusData


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
    | LinkClicked,
    Field(discriminator="type"),
]

EVENT_ADAPTER: TypeAdapter[Event] = TypeAdapter(Event)
EVENT_TYPES: tuple[str, ...] = (
    "contact.created", "contact.updated", "cart.updated", "payment.succeeded", "payment.failed",
    "shipment.updated", "order.returned", "product.price_changed", "feedback.submitted",
    "message.inbound", "message.status", "link.clicked",
)


def parse_event(raw: Any) -> Event:
    """Validate one decoded JSON object as an event; raises pydantic.ValidationError."""
    return EVENT_ADAPTER.validate_python(raw)


def event_json_schema() -> dict[str, Any]:
    """The JSON Schema of the event union, for shops producing to Kafka directly."""
    return EVENT_ADAPTER.json_schema()
