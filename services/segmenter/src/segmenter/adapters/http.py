"""HTTP routes of the segmenter: a contact's features, activity tier and tags, for its tenant only."""

# No `from __future__ import annotations`: FastAPI must see the dependency annotations built here.
from collections.abc import Awaitable, Callable
from datetime import date, datetime
from typing import Annotated

from fastapi import APIRouter, Depends, FastAPI, HTTPException
from prometheus_client import CollectorRegistry
from pydantic import BaseModel

from scrm_common.clock import Clock
from scrm_common.http import Principal, ops_router
from scrm_common.phones import InvalidPhoneNumber, to_e164
from segmenter.domain.features import ContactFeatures
from segmenter.domain.policy import SegmentPolicy
from segmenter.domain.tiers import activity_tier, tags, value_tier, window_spend
from segmenter.handlers import ContactStore


class ContactIdentity(BaseModel):
    """Who the contact is."""

    key: str
    external_id: str | None
    phone: str | None
    name: str | None
    locale: str | None
    timezone: str | None
    birthday: date | None
    opted_in: bool | None


class FeaturesRead(BaseModel):
    """What the contact did; money in the orders' currency units, net of returns."""

    first_seen: datetime | None
    last_event_at: datetime | None
    last_inbound_at: datetime | None
    last_read_at: datetime | None
    last_click_at: datetime | None
    inbound_messages: int
    link_clicks: int
    interactions: int
    orders: int
    spend: float
    spend_last_365d: float
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


def contact_view(tenant: str, key: str, f: ContactFeatures, now: datetime, policy: SegmentPolicy) -> ContactRead:
    """The contact as the API shows it, its tiers and tags computed against `now`."""
    tier = activity_tier(f, now, policy)
    return ContactRead(
        tenant=tenant,
        contact=ContactIdentity(key=key, external_id=f.external_id, phone=f.phone, name=f.name, locale=f.locale,
                                timezone=f.timezone, birthday=f.birthday, opted_in=f.opted_in),
        features=FeaturesRead(
            first_seen=f.first_seen, last_event_at=f.last_event_at, last_inbound_at=f.last_inbound_at,
            last_read_at=f.last_read_at, last_click_at=f.last_click_at, inbound_messages=f.inbound_messages,
            link_clicks=f.link_clicks, interactions=f.interactions, orders=f.orders,
            spend=float(round(f.spend, 2)),
            spend_last_365d=float(round(window_spend(f, now, policy), 2)),
            value_tier=value_tier(f, now, policy).value if f.orders else None,
            returns=f.returns, first_order_at=f.first_order_at, last_order_at=f.last_order_at,
            last_rating=f.last_rating),
        activity=ActivityRead(tier=tier.value, colour=tier.colour, as_of=now),
        tags=list(tags(f, now, policy)),
    )


def contacts_router(*, store: ContactStore, principal: Callable[..., Awaitable[Principal]], clock: Clock,
                    policy: SegmentPolicy) -> APIRouter:
    """`GET /v1/contacts/{contact}`: contact = external id or E.164 phone, URL-encoded."""
    router = APIRouter(tags=["contacts"])
    Caller = Annotated[Principal, Depends(principal)]

    @router.get("/v1/contacts/{contact:path}", response_model=ContactRead,
                responses={404: {"description": "no such contact for this tenant"}})
    async def read_contact(contact: str, caller: Caller) -> ContactRead:
        """A contact of the caller's tenant with its features, activity tier and tags as of now."""
        try:
            phone: str | None = to_e164(contact)
        except InvalidPhoneNumber:
            phone = None
        found = await store.find(caller.tenant, contact, phone)
        if found is None:
            raise HTTPException(404, detail="contact not found")
        key, features = found
        return contact_view(caller.tenant, key, features, clock.now(), policy)

    return router


def create_app(*, store: ContactStore, principal: Callable[..., Awaitable[Principal]], clock: Clock,
               policy: SegmentPolicy, registry: CollectorRegistry, ready: Callable[[], Awaitable[bool]]) -> FastAPI:
    """The segmenter's HTTP application."""
    app = FastAPI(title="scrm segmenter", version="0.1.0", description="Contact features, tiers and tags")
    app.include_router(ops_router(registry, ready))
    app.include_router(contacts_router(store=store, principal=principal, clock=clock, policy=policy))
    return app
