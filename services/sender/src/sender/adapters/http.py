"""Sender HTTP: accounts, the send log and the invalid-number marks of the caller's tenant."""


from datetime import datetime
from typing import Annotated, Literal

from fastapi import APIRouter, Depends, Path, Query, Response
from pydantic import BaseModel, Field
from sqlalchemy.ext.asyncio import AsyncEngine

from scrm_common.clock import Clock
from scrm_common.http import ApiError, KeyIntrospection, Principal, error_responses, has_control_character
from scrm_common.http import install_error_handlers as install_error_handlers  # the services' one, re-exported
from scrm_common.phones import InvalidPhoneNumber, to_e164
from sender.adapters.db import SendLog
from sender.domain.lookup import phone_forms


class RestrictionRead(BaseModel):
    """A restriction of an account in force (R-S6): what it blocks and until when (null: until lifted)."""

    kind: str
    scope: Literal["business_initiated", "customer_initiated", "all", "none"]
    until: datetime | None
    reason: str


class AccountRead(BaseModel):
    """A WhatsApp account (phone number id) of the tenant and its pacing policy; never its token."""

    account_id: str
    waba_id: str | None
    marketing_min_interval_s: float
    marketing_max_interval_s: float
    marketing_per_hour: int
    new_account_per_day: int
    new_account_days: int
    throughput_per_second: float
    created_at: datetime
    restrictions: list[RestrictionRead]


class AccountsRead(BaseModel):
    """GET /v1/accounts."""

    tenant: str
    accounts: list[AccountRead]


class MessageRead(BaseModel):
    """One message of the send log (R-S8)."""

    idempotency_key: str
    account_id: str
    flow: str
    category: str
    contact_key: str
    to_phone: str
    state: Literal["queued", "sending", "sent", "failed"]
    attempts: int
    wamid: str | None
    wa_id: str | None = Field(description="the WhatsApp id Meta answered for the number sent to")
    provider_message_status: str | None
    error_code: int | None
    error_reason: str | None
    held_by: str | None = Field(description="the account restriction a queued message waits for")
    late_retry_used: bool
    next_attempt_at: datetime
    queued_at: datetime
    sent_at: datetime | None


class MessagesRead(BaseModel):
    """GET /v1/messages: newest first."""

    tenant: str
    messages: list[MessageRead]


class InvalidNumberRead(BaseModel):
    """A number marked invalid (R-S7): the error code, when it was marked and when the mark expires."""

    phone: str
    code: int | None
    marked_at: datetime
    expires_at: datetime


class InvalidNumbersRead(BaseModel):
    """GET /v1/invalid-numbers."""

    tenant: str
    invalid_numbers: list[InvalidNumberRead]


def _phone(raw: str) -> str:
    """The E.164 form of a path's phone (`+4915…`, `4915…`, `%2B4915…`), or 422."""
    if has_control_character(raw):  # `RequestContext` refuses these first; a router mounted without it too
        raise ApiError(422, "invalid_phone", "not a phone number: it contains a control character")
    try:
        return to_e164(raw if raw.startswith("+") else "+" + raw)
    except InvalidPhoneNumber as exc:
        raise ApiError(422, "invalid_phone", f"not a phone number: {exc}") from None


def build_router(*, engine: AsyncEngine, send_log: SendLog, keys: KeyIntrospection, clock: Clock) -> APIRouter:
    """The sender's routes for the caller's tenant (key introspection through ingest: 401/503)."""
    router = APIRouter(responses=error_responses(401, 503))
    PrincipalDep = Annotated[Principal, Depends(keys.principal)]

    @router.get("/v1/accounts", response_model=AccountsRead, tags=["accounts"])
    async def accounts(principal: PrincipalDep) -> AccountsRead:
        """The tenant's WhatsApp accounts, their pacing policies and restrictions in force (tokens never)."""
        async with engine.connect() as conn:
            rows = await send_log.accounts(conn, principal.tenant, clock.now())
        return AccountsRead(tenant=principal.tenant, accounts=[AccountRead.model_validate(r) for r in rows])

    @router.get("/v1/messages", response_model=MessagesRead, tags=["send log"])
    async def messages(principal: PrincipalDep, contact: str | None = None,
                       limit: Annotated[int, Query(ge=1, le=1000)] = 100) -> MessagesRead:
        """The send log (R-S8), newest first, optionally for one contact: any key the shop gave it, or the
        phone sent to in any form (`+49 151 …`, `0049…`, a bare wa_id, either WhatsApp form of a Mexican,
        Brazilian or Argentine number); 422 for a `contact` with a control character."""
        if contact is not None and has_control_character(contact):
            raise ApiError(422, "invalid_request", "invalid request", errors=[
                {"index": None, "field": "query.contact", "reason": "contains a control character"}])
        phones, wa_ids = phone_forms(contact) if contact is not None else ((), ())
        async with engine.connect() as conn:
            rows = await send_log.recent(conn, principal.tenant, contact, limit, phones=phones, wa_ids=wa_ids)
        return MessagesRead(tenant=principal.tenant, messages=[MessageRead.model_validate(r) for r in rows])

    @router.get("/v1/messages/{idempotency_key}", response_model=MessageRead, tags=["send log"],
                responses=error_responses(404))
    async def message(idempotency_key: Annotated[str, Path(examples=["payment-confirmation:pay-8f3a"])],
                      principal: PrincipalDep) -> MessageRead:
        """One message of the send log by its idempotency key (R-S8); 404 when there is none."""
        if has_control_character(idempotency_key):
            raise ApiError(404, "not_found", "no such message")
        async with engine.connect() as conn:
            row = await send_log.message(conn, principal.tenant, idempotency_key)
        if row is None:
            raise ApiError(404, "not_found", "no such message")
        return MessageRead.model_validate(row)

    @router.get("/v1/invalid-numbers", response_model=InvalidNumbersRead, tags=["invalid numbers"])
    async def invalid_numbers(principal: PrincipalDep, include_expired: bool = False) -> InvalidNumbersRead:
        """Numbers marked invalid (R-S7) with the error code, when marked and when the mark expires.

        Only marks in force unless `include_expired=true`; a marked number's messages are refused.
        """
        async with engine.connect() as conn:
            rows = await send_log.list_invalid_numbers(conn, principal.tenant, clock.now(),
                                                       include_expired=include_expired)
        return InvalidNumbersRead(tenant=principal.tenant,
                                  invalid_numbers=[InvalidNumberRead.model_validate(r) for r in rows])

    @router.delete("/v1/invalid-numbers/{phone}", status_code=204, response_class=Response, tags=["invalid numbers"],
                   responses=error_responses(403, 404, 422))
    async def unmark(phone: Annotated[str, Path(description="the number in any form (`+4915112345678`, `4915…`)",
                                                examples=["+4915112345678"])],
                     principal: PrincipalDep) -> Response:
        """Remove a number's invalid mark so later messages to it are sent again (not with a read-only key).

        404 `not_marked` when the number carries no mark; 422 `invalid_phone` when it is no phone number.
        """
        if principal.read_only:
            raise ApiError(403, "forbidden", "a read-only key may not change invalid-number marks")
        number = _phone(phone)
        async with engine.begin() as conn:
            removed = await send_log.delete_invalid_number(conn, principal.tenant, number)
        if not removed:
            raise ApiError(404, "not_marked", f"{number} is not marked invalid")
        return Response(status_code=204)

    return router
