"""HTTP routes of the segmenter: a contact's features, tiers and tags, and the tenant's currency settings."""

# No `from __future__ import annotations`: FastAPI must see the dependency annotations built here.
from collections.abc import Awaitable, Callable
from datetime import date, datetime
from decimal import Decimal
from typing import Annotated, Literal

from fastapi import APIRouter, Body, Depends, FastAPI, HTTPException
from prometheus_client import CollectorRegistry
from pydantic import BaseModel, ConfigDict, Field

from scrm_common.clock import Clock
from scrm_common.http import (
    ADMIN,
    KEY_ERRORS,
    READ,
    KeyIntrospection,
    Principal,
    error_responses,
    ops_router,
    service_app,
)
from segmenter.domain.aliases import lookup_aliases
from segmenter.domain.currency import CurrencySettings
from segmenter.domain.features import ContactFeatures
from segmenter.domain.policy import SegmentPolicy
from segmenter.domain.tiers import activity_tier, lifetime_spend, tags, value_tier, window_spend
from segmenter.handlers import ContactStore


class ContactIdentity(BaseModel):
    """Who the contact is: its key and aliases; `name` is the shop's name, else the WhatsApp profile name."""

    key: str
    external_id: str | None
    external_ids: list[str]
    phone: str | None
    wa_id: str | None
    name: str | None
    profile_name: str | None
    locale: str | None
    timezone: str | None
    birthday: date | None
    opted_in: bool | None


class FeaturesRead(BaseModel):
    """What the contact did. Money is exact, as decimal strings in the currency's minor units.

    `spend` / `spend_last_365d` are net of returns and converted to `spend_currency` (the tenant's base
    currency) with the FX rates of `fx_as_of`; spend in currencies without a rate is listed per currency
    in `unconverted_spend*` and not added (R-G5 compares the converted spend only).
    """

    first_seen: datetime | None
    last_event_at: datetime | None
    last_inbound_at: datetime | None
    last_read_at: datetime | None
    last_click_at: datetime | None
    inbound_messages: int
    link_clicks: int
    interactions: int
    orders: int
    spend: Decimal
    spend_last_365d: Decimal
    spend_currency: str
    unconverted_spend: dict[str, Decimal]
    unconverted_spend_last_365d: dict[str, Decimal]
    fx_as_of: date | None
    value_tier: str | None
    returns: int
    first_order_at: datetime | None
    last_order_at: datetime | None
    last_rating: int | None


class ActivityRead(BaseModel):
    """R-G1 activity tier as of `as_of`."""

    tier: str
    colour: str
    as_of: datetime


class ContactRead(BaseModel):
    """GET /v1/contacts/{contact}."""

    tenant: str
    contact: ContactIdentity
    features: FeaturesRead
    activity: ActivityRead
    tags: list[str]


CURRENCY_EXAMPLE = {"base_currency": "EUR", "rates": {"JPY": "0.0061", "USD": "0.92"}, "as_of": "2026-11-30"}


class CurrencySettingsRead(BaseModel):
    """GET|PUT /v1/settings/currency: `rates[c]` = units of `base_currency` per unit of `c`, as of `as_of`.

    `source` is `tenant` once the tenant stored its own settings, else `default` (the installation's).
    """

    tenant: str
    base_currency: str
    rates: dict[str, Decimal]
    as_of: date | None
    source: Literal["tenant", "default"]
    updated_at: datetime | None


class CurrencySettingsWrite(CurrencySettings):
    """PUT /v1/settings/currency: `base_currency`, `rates` (units of the base per unit of each currency,
    numbers or decimal strings) and `as_of` (the date the rates are valid for; required with rates).

    The read-only fields GET returns (`tenant`, `source`, `updated_at`) are accepted and ignored, so the
    object GET answers can be edited and sent back as it is; `tenant`, when given, must be the caller's.
    Any other field is refused (422).
    """

    model_config = ConfigDict(frozen=True, extra="forbid", json_schema_extra={"examples": [CURRENCY_EXAMPLE]})

    tenant: str | None = Field(default=None, description="read-only: ignored, must be the caller's tenant")
    source: Literal["tenant", "default"] | None = Field(default=None, description="read-only: ignored")
    updated_at: datetime | None = Field(default=None, description="read-only: ignored")

    def settings(self) -> CurrencySettings:
        """The settings to store, without the read-only fields."""
        return CurrencySettings(base_currency=self.base_currency, rates=self.rates, as_of=self.as_of)


def contact_view(tenant: str, key: str, f: ContactFeatures, now: datetime, policy: SegmentPolicy,
                 fx: CurrencySettings) -> ContactRead:
    """The contact as the API shows it, its tiers and tags computed against `now` in the tenant's currency."""
    tier = activity_tier(f, now, policy)
    lifetime, recent = lifetime_spend(f, fx), window_spend(f, now, policy, fx)
    return ContactRead(
        tenant=tenant,
        contact=ContactIdentity(key=key, external_id=f.external_id, external_ids=list(f.external_ids), phone=f.phone,
                                wa_id=f.wa_id, name=f.display_name, profile_name=f.profile_name, locale=f.locale,
                                timezone=f.timezone, birthday=f.birthday, opted_in=f.opted_in),
        features=FeaturesRead(
            first_seen=f.first_seen, last_event_at=f.last_event_at, last_inbound_at=f.last_inbound_at,
            last_read_at=f.last_read_at, last_click_at=f.last_click_at, inbound_messages=f.inbound_messages,
            link_clicks=f.link_clicks, interactions=f.interactions, orders=f.orders,
            spend=lifetime.converted, spend_last_365d=recent.converted, spend_currency=fx.base_currency,
            unconverted_spend=lifetime.unconverted, unconverted_spend_last_365d=recent.unconverted,
            fx_as_of=fx.as_of,
            value_tier=value_tier(f, now, policy, fx).value if f.orders else None,
            returns=f.returns, first_order_at=f.first_order_at, last_order_at=f.last_order_at,
            last_rating=f.last_rating),
        activity=ActivityRead(tier=tier.value, colour=tier.colour, as_of=now),
        tags=list(tags(f, now, policy, fx)),
    )


async def tenant_currency(store: ContactStore, tenant: str, default: CurrencySettings
                          ) -> tuple[CurrencySettings, datetime | None]:
    """The tenant's own currency settings and when they changed, else the default (and None)."""
    stored = await store.currency(tenant)
    return (stored.settings, stored.updated_at) if stored is not None else (default, None)


def contacts_router(*, store: ContactStore, keys: KeyIntrospection, clock: Clock, policy: SegmentPolicy,
                    currency: CurrencySettings) -> APIRouter:
    """`GET /v1/contacts/{contact}` (role read or admin): contact = any alias (external id, phone, wa_id, BSUID),
    URL-encoded."""
    router = APIRouter(tags=["contacts"], responses=KEY_ERRORS)
    Caller = Annotated[Principal, Depends(keys.require(READ))]

    @router.get("/v1/contacts/{contact:path}", response_model=ContactRead,
                responses={404: {**error_responses(404)[404], "description": "no such contact for this tenant"}})
    async def read_contact(contact: str, caller: Caller) -> ContactRead:
        """A contact of the caller's tenant with its features, activity tier and tags as of now.

        Found by its key or any alias: an external id the shop used, a phone in any format, the
        WhatsApp id (`5215512345678` finds the contact stored as `+525512345678`), or a BSUID.
        """
        found = await store.find(caller.tenant, contact, lookup_aliases(contact))
        if found is None:
            raise HTTPException(404, detail="contact not found")
        key, features = found
        fx, _ = await tenant_currency(store, caller.tenant, currency)
        return contact_view(caller.tenant, key, features, clock.now(), policy, fx)

    return router


def settings_router(*, store: ContactStore, keys: KeyIntrospection, clock: Clock,
                    currency: CurrencySettings) -> APIRouter:
    """`GET|PUT /v1/settings/currency`: the tenant's base currency and dated FX rates (R-G5); GET needs role
    read or admin, PUT role admin."""
    router = APIRouter(tags=["settings"], responses=KEY_ERRORS)
    Caller = Annotated[Principal, Depends(keys.require(READ))]
    Writer = Annotated[Principal, Depends(keys.require(ADMIN))]

    def view(tenant: str, fx: CurrencySettings, updated_at: datetime | None) -> CurrencySettingsRead:
        return CurrencySettingsRead(tenant=tenant, base_currency=fx.base_currency, rates=dict(fx.rates),
                                    as_of=fx.as_of, source="tenant" if updated_at else "default",
                                    updated_at=updated_at)

    @router.get("/v1/settings/currency", response_model=CurrencySettingsRead)
    async def read_currency(caller: Caller) -> CurrencySettingsRead:
        """The base currency value tiers are computed in, and the FX rates other currencies convert with."""
        fx, updated_at = await tenant_currency(store, caller.tenant, currency)
        return view(caller.tenant, fx, updated_at)

    @router.put("/v1/settings/currency", response_model=CurrencySettingsRead,
                responses={422: {**error_responses(422)[422],
                                 "description": "unknown currency, bad rate, rates without their date"}})
    async def put_currency(caller: Writer, body: Annotated[CurrencySettingsWrite, Body(
            openapi_examples={"rates": {"summary": "EUR base with two rates", "value": CURRENCY_EXAMPLE}})]
                           ) -> CurrencySettingsRead:
        """Replace the tenant's currency settings; value tiers of its customers are recomputed shortly after.

        Rates are units of the base currency per unit of the other currency (numbers or decimal strings).
        Spend in a currency without a rate is kept apart, never added raw. The body GET returns may be sent
        back as it is: its read-only `tenant`, `source` and `updated_at` are ignored (a `tenant` other than
        the caller's is refused). Bad input changes nothing.
        """
        if body.tenant is not None and body.tenant != caller.tenant:
            raise HTTPException(422, detail=[{"field": "body.tenant",
                                              "reason": "read-only; must be the caller's tenant or left out"}])
        fx = body.settings()
        now = clock.now()
        await store.put_currency(caller.tenant, fx, now)
        return view(caller.tenant, fx, now)

    return router


def create_app(*, store: ContactStore, keys: KeyIntrospection, clock: Clock, policy: SegmentPolicy,
               registry: CollectorRegistry, ready: Callable[[], Awaitable[bool]],
               currency: CurrencySettings | None = None) -> FastAPI:
    """The segmenter's HTTP application; `keys` resolves API keys and checks each route's role, `currency` is
    the tenants' default (Settings.default_currency)."""
    default = currency or CurrencySettings()
    app = service_app("scrm segmenter", "0.1.0", description="Contact features, tiers and tags")
    app.include_router(ops_router(registry, ready))
    app.include_router(contacts_router(store=store, keys=keys, clock=clock, policy=policy, currency=default))
    app.include_router(settings_router(store=store, keys=keys, clock=clock, currency=default))
    return app
