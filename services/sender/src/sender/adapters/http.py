"""Sender HTTP: accounts, the send log and the invalid-number marks of the caller's tenant."""


import logging
from collections.abc import Callable
from datetime import datetime
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, Path, Query, Response
from pydantic import BaseModel, ConfigDict, Field, SecretStr, ValidationError, ValidationInfo, field_validator
from sqlalchemy.ext.asyncio import AsyncEngine

from scrm_common.clock import Clock
from scrm_common.contracts.events import Timestamp
from scrm_common.db.outbox import enqueue
from scrm_common.http import (
    ADMIN,
    READ,
    ApiError,
    KeyIntrospection,
    Principal,
    error_responses,
    field_error,
    has_control_character,
)
from scrm_common.http import install_error_handlers as install_error_handlers  # the services' one, re-exported
from scrm_common.phones import InvalidPhoneNumber, to_e164
from sender.adapters.accounts import (
    POLICY_FIELDS,
    REMOVED_REASON,
    AccountConflict,
    AccountRepository,
    NewAccount,
    merged,
)
from sender.adapters.cloud_api import CloudApiClient, NotSent, PhoneNumber, Rejected, WabaNumbers
from sender.adapters.db import SendLog
from sender.adapters.secrets import UnreadableToken
from sender.domain.accounts import (
    DEFAULT_MAX_INTERVAL_S,
    DEFAULT_MIN_INTERVAL_S,
    DEFAULT_NEW_DAYS,
    DEFAULT_NEW_PER_DAY,
    DEFAULT_PER_HOUR,
    MAX_INTERVAL_S,
    MAX_NEW_ACCOUNT_DAYS,
    MESSAGING_LIMIT_NEW,
    THROUGHPUT_TIERS,
    AccountPolicy,
    Fault,
    policy_faults,
)
from sender.domain.lookup import phone_forms
from sender.handlers import outcome_event, stored_command

log = logging.getLogger(__name__)


class RestrictionRead(BaseModel):
    """A restriction of an account in force (R-S6): what it blocks and until when (null: until lifted)."""

    kind: str
    scope: Literal["business_initiated", "customer_initiated", "all", "none"]
    until: datetime | None
    reason: str


class AccountRead(BaseModel):
    """A WhatsApp account (phone number id) of the tenant, its throughput tier and pacing policy (R-S3) and
    the restrictions in force; never its access token."""

    account_id: str
    waba_id: str | None
    display_name: str | None
    throughput_per_second: int = Field(description="messages per second: 80 or 1000 (CLOUD-API §6.2)")
    marketing_min_interval_s: float
    marketing_max_interval_s: float
    marketing_per_hour: int
    new_account_per_day: int
    new_account_days: int
    registered_at: datetime = Field(description="when the number was registered: new-account protection "
                                                "(R-S3) lasts `new_account_days` from it")
    created_at: datetime
    updated_at: datetime
    restrictions: list[RestrictionRead]

    @field_validator("throughput_per_second", mode="before")
    @classmethod
    def _whole(cls, value: Any) -> Any:
        return round(value) if isinstance(value, float) else value


_DIGITS = r"^[0-9]{1,64}$"
_TOKEN_CHARS = frozenset(chr(c) for c in range(0x21, 0x7F))
_MAX_TOKEN = 4096
_NULLABLE = frozenset({"display_name"})


def _bounds(minimum: float, maximum: float, *, exclusive_minimum: bool = False) -> dict[str, Any]:
    """OpenAPI bounds of a policy field (checked by `domain.accounts.policy_faults`, in its own words)."""
    low = {"exclusiveMinimum": minimum} if exclusive_minimum else {"minimum": minimum}
    return {"json_schema_extra": {**low, "maximum": maximum}}


class _AccountFields(BaseModel):
    """Fields a POST and a PATCH share; the policy's bounds are `domain.accounts`'s (CLOUD-API §6)."""

    model_config = ConfigDict(extra="forbid", hide_input_in_errors=True)  # a refused token is never echoed

    waba_id: Annotated[str, Field(pattern=_DIGITS, description="the WhatsApp Business Account id (digits)",
                                  examples=["200000000000001"])]
    display_name: Annotated[str, Field(min_length=1, max_length=256)] | None = Field(
        default=None, description="shown for the number; default: the Cloud API's verified name")
    access_token: SecretStr = Field(
        description="the Cloud API access token (system-user token) for this number: write-only, stored "
                    "encrypted, never returned or logged; checked with the Cloud API before it is stored")
    throughput_per_second: Literal[80, 1000] = Field(
        default=80, description="the number's Cloud API throughput tier, messages per second (CLOUD-API §6.2)")
    registered_at: Timestamp | None = Field(
        default=None, description="when the number was registered with WhatsApp (default: now); R-S3 "
                                  "new-account protection counts from it; not in the future")
    marketing_min_interval_s: float = Field(
        default=DEFAULT_MIN_INTERVAL_S, description="R-S3: least seconds between two marketing messages "
        "(≥ 1/throughput)", **_bounds(0, MAX_INTERVAL_S, exclusive_minimum=True))
    marketing_max_interval_s: float = Field(
        default=DEFAULT_MAX_INTERVAL_S, description="R-S3: most seconds between two marketing messages "
        "(≥ the least)", **_bounds(0, MAX_INTERVAL_S, exclusive_minimum=True))
    marketing_per_hour: int = Field(default=DEFAULT_PER_HOUR, description="R-S3: marketing messages per hour "
                                                                         "(≤ throughput × 3600)",
                                    **_bounds(0, max(THROUGHPUT_TIERS) * 3600))
    new_account_per_day: int = Field(default=DEFAULT_NEW_PER_DAY, description="R-S3: a new account sends fewer "
                                                                             "marketing messages than this a day",
                                     **_bounds(1, MESSAGING_LIMIT_NEW))
    new_account_days: int = Field(default=DEFAULT_NEW_DAYS, description="R-S3: for this many days after "
                                                                       "`registered_at` (0: no such limit)",
                                  **_bounds(0, MAX_NEW_ACCOUNT_DAYS))

    @field_validator("access_token")
    @classmethod
    def _token(cls, value: SecretStr | None) -> SecretStr | None:
        raw = value.get_secret_value() if value is not None else None
        if raw is not None and (not raw or len(raw) > _MAX_TOKEN or not set(raw) <= _TOKEN_CHARS):
            raise ValueError(f"must be 1 to {_MAX_TOKEN} printable ASCII characters without spaces")
        return value

    @field_validator("display_name")
    @classmethod
    def _plain(cls, value: str | None) -> str | None:
        if value is not None and has_control_character(value):
            raise ValueError("contains a control character")
        return value


class AccountCreate(_AccountFields):
    """POST /v1/accounts: a phone number id of the tenant's, its WABA, access token and policy (R-S3 defaults)."""

    account_id: Annotated[str, Field(pattern=_DIGITS, description="the Cloud API phone number id (digits)",
                                     examples=["100000000000002"])]


class AccountUpdate(_AccountFields):
    """PATCH /v1/accounts/{account_id}: the fields to change (absent ones keep their value; only
    `display_name` may be null, to fall back to none)."""

    waba_id: Annotated[str, Field(pattern=_DIGITS)] | None = None  # type: ignore[assignment]
    access_token: SecretStr | None = None  # type: ignore[assignment]
    throughput_per_second: Literal[80, 1000] | None = None  # type: ignore[assignment]
    marketing_min_interval_s: float | None = None  # type: ignore[assignment]
    marketing_max_interval_s: float | None = None  # type: ignore[assignment]
    marketing_per_hour: int | None = None  # type: ignore[assignment]
    new_account_per_day: int | None = None  # type: ignore[assignment]
    new_account_days: int | None = None  # type: ignore[assignment]

    @field_validator("*", mode="before")
    @classmethod
    def _not_null(cls, value: Any, info: ValidationInfo) -> Any:
        if value is None and info.field_name not in _NULLABLE:
            raise ValueError("may not be null; leave the field out to keep its value")
        return value


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
    state: Literal["queued", "sending", "sent", "failed", "suppressed"] = Field(
        description="`suppressed`: the send gate (or a withdrawal) stopped it for good; `rule` says which rule")
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
    rule: str | None = Field(default=None, description=(
        "the send-gate rule that last deferred it (kept after it was sent) or suppressed it: R-S4, R-S5, R-S6, "
        "R-S7, WINDOW, EXPIRED, WITHDRAWN, META-131049, R-T4.5, R-T6.3"))
    deferred_until: datetime | None = Field(default=None, description="the instant its last deferral named (UTC)")
    expires_at: datetime | None = Field(default=None, description="from then on it is not sent (the command's)")
    suppressed_at: datetime | None = None
    delivered_at: datetime | None = Field(default=None, description="when Meta reported it delivered")
    read_at: datetime | None = Field(default=None, description="when Meta reported it read")


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


def _faults(faults: list[Fault]) -> ApiError:
    """The 422 for policy faults: one entry per field, `body.<name>`."""
    return ApiError(422, "invalid_request", "invalid request",
                    errors=[field_error(f"body.{f.field}", f.reason) for f in faults])


def _account(rows: list[dict[str, Any]], account_id: str) -> "AccountRead":
    if not rows:
        raise ApiError(404, "not_found", f"no account {account_id}")
    return AccountRead.model_validate(rows[0])


def build_router(*, engine: AsyncEngine, send_log: SendLog, keys: KeyIntrospection, clock: Clock,
                 accounts: AccountRepository, cloud_api: CloudApiClient,
                 on_commit: Callable[[], None] = lambda: None) -> APIRouter:
    """The sender's routes for the caller's tenant: GETs need role `read` or `admin`, changes `admin` (key
    introspection through ingest: 401/403/503). `cloud_api` checks an account's token before it is stored;
    `on_commit` is called after a change wrote events to the outbox (the relay's wake-up)."""
    router = APIRouter(responses=error_responses(401, 503))
    Reader = Annotated[Principal, Depends(keys.require(READ))]
    Admin = Annotated[Principal, Depends(keys.require(ADMIN))]
    AccountId = Annotated[str, Path(description="the phone number id", examples=["100000000000001"])]

    def refusal(answer: Rejected | NotSent, token: str, what: str) -> ApiError | str:
        """The 503 for a provider that cannot answer now (no answer, 429, 5xx, rate limits 4/80007/130429),
        else the provider's reason (the token masked) for a 422."""
        if isinstance(answer, NotSent):
            log.warning("could not %s with the Cloud API: %s", what, answer.reason)
            return ApiError(503, "provider_unavailable", f"the WhatsApp Cloud API could not be reached to {what}; "
                                                         "retry later")
        reason = answer.details.replace(token, "***") if token else answer.details
        if answer.http_status == 429 or answer.http_status >= 500 or answer.code in (4, 80007, 130429):
            return ApiError(503, "provider_unavailable", f"the WhatsApp Cloud API could not {what} now "
                                                         f"(code {answer.code}): {reason}; retry later")
        return reason

    async def verify(account_id: str, token: str, waba_id: str | None) -> PhoneNumber:
        """The Cloud API's word on the number and its WABA with this token, before anything is stored or a
        conflict is told (CLOUD-API §1, §6.5): `GET /{version}/{phone_number_id}` proves the token may use the
        number, then `GET /{version}/{waba_id}/phone_numbers` (every page) that the WABA lists the number for
        that token. 422 `provider_refused` naming the field refused — `access_token` (190 and every other
        refusal of the number), `account_id` (100 / 404: an unknown number), `waba_id` (the WABA refused for
        the token, or the number not in its list) — with the provider's reason; 503 `provider_unavailable`
        when it cannot be asked or limits us."""
        answer = await cloud_api.phone_number(phone_number_id=account_id, access_token=token)
        if not isinstance(answer, PhoneNumber):
            reason = refusal(answer, token, "check the account")
            if isinstance(reason, ApiError):
                raise reason
            assert isinstance(answer, Rejected)
            field = "account_id" if answer.code == 100 or answer.http_status == 404 else "access_token"
            what = "does not know this phone number id for the token" if field == "account_id" else \
                "refused the access token"
            raise ApiError(422, "provider_refused", f"the WhatsApp Cloud API {what}", errors=[field_error(
                f"body.{field}", f"the Cloud API answered code {answer.code}: {reason}")])
        if waba_id is None:
            return answer
        listed = await cloud_api.waba_numbers(waba_id=waba_id, access_token=token)
        if isinstance(listed, WabaNumbers):
            if account_id in listed.ids:
                return answer
            raise ApiError(422, "provider_refused", "the WhatsApp Cloud API does not list the phone number in the "
                                                    "WABA", errors=[field_error(
                "body.waba_id", f"phone number {account_id} is not in WABA {waba_id}: the Cloud API lists "
                                f"{len(listed.ids)} other phone numbers of it for this token")])
        reason = refusal(listed, token, "check the WABA")
        if isinstance(reason, ApiError):
            raise reason
        assert isinstance(listed, Rejected)
        field = "access_token" if listed.code == 190 else "waba_id"
        raise ApiError(422, "provider_refused", "the WhatsApp Cloud API refused the WABA for the access token",
                       errors=[field_error(f"body.{field}", f"the Cloud API answered code {listed.code} for the "
                                                            f"phone numbers of WABA {waba_id}: {reason}")])

    @router.get("/v1/accounts", response_model=AccountsRead, tags=["accounts"])
    async def list_accounts(principal: Reader) -> AccountsRead:
        """The tenant's WhatsApp accounts, their pacing policies and restrictions in force (tokens never)."""
        async with engine.connect() as conn:
            rows = await send_log.accounts(conn, principal.tenant, clock.now())
        return AccountsRead(tenant=principal.tenant, accounts=[AccountRead.model_validate(r) for r in rows])

    @router.get("/v1/accounts/{account_id}", response_model=AccountRead, tags=["accounts"],
                responses=error_responses(404))
    async def get_account(account_id: AccountId, principal: Reader) -> AccountRead:
        """One account of the tenant; 404 for a number it does not have (another tenant's too)."""
        async with engine.connect() as conn:
            rows = await send_log.accounts(conn, principal.tenant, clock.now(), account_id)
        return _account(rows, account_id)

    @router.post("/v1/accounts", status_code=201, response_model=AccountRead, tags=["accounts"],
                 responses=error_responses(409, 422, 503))
    async def create_account(body: AccountCreate, principal: Admin) -> AccountRead:
        """Add a WhatsApp account (phone number id) to the tenant: its WABA, access token and pacing policy
        (R-S3 defaults; beyond the Cloud API's limits → 422 naming the field). The token is checked with the
        Cloud API first — the number (`GET /{version}/{phone_number_id}`) and that the WABA lists it
        (`GET /{version}/{waba_id}/phone_numbers`): refused → 422 with the provider's reason, nothing stored.
        Only then, 409 `account_taken` when another tenant owns the number or its WABA, `account_exists`
        when this tenant has it (so no caller without a working token learns who has what). Publishes
        `account.registered` (ingest routes the number's webhooks to the tenant by it)."""
        now = clock.now()
        registered = body.registered_at or now
        policy = AccountPolicy(**{f: getattr(body, f) for f in POLICY_FIELDS})
        faults = policy_faults(policy, registered_at=registered, now=now, given=body.model_fields_set)
        if faults:
            raise _faults(faults)
        token = body.access_token.get_secret_value()
        number = await verify(body.account_id, token, body.waba_id)  # before any conflict is told
        async with engine.connect() as conn:
            try:
                await accounts.conflict(conn, principal.tenant, body.account_id, body.waba_id)
            except AccountConflict as exc:
                raise ApiError(409, exc.code, exc.message) from None
        new = NewAccount(account_id=body.account_id, waba_id=body.waba_id,
                         display_name=body.display_name or number.verified_name, access_token=token, policy=policy,
                         registered_at=registered)
        async with engine.begin() as conn:
            try:
                await accounts.create(conn, principal.tenant, new, now)
            except AccountConflict as exc:
                raise ApiError(409, exc.code, exc.message) from None
            rows = await send_log.accounts(conn, principal.tenant, now, body.account_id)
        on_commit()
        log.info("account %s added", body.account_id, extra={"tenant": principal.tenant})
        return _account(rows, body.account_id)

    @router.patch("/v1/accounts/{account_id}", response_model=AccountRead, tags=["accounts"],
                  responses=error_responses(404, 409, 422, 503))
    async def update_account(account_id: AccountId, body: AccountUpdate, principal: Admin) -> AccountRead:
        """Change some fields of an account (absent ones keep their value): checked as a POST is — the
        merged policy against the Cloud API's limits (a rule between two fields names the one given); a
        new token or a new WABA is proven with the Cloud API first — the number with the token, and that the
        (new or stored) WABA lists the number for the (new or stored) token, else 422 with the provider's
        reason — and only then is a new WABA of another tenant's a 409. Publishes
        `account.registered`; a change takes effect at the account's next dispatch, on every replica."""
        now = clock.now()
        changes = body.model_dump(exclude_unset=True, exclude={"access_token"})
        token = body.access_token.get_secret_value() if body.access_token is not None else None
        async with engine.connect() as conn:
            current = await send_log.accounts(conn, principal.tenant, now, account_id)
        row = _account(current, account_id).model_dump()
        if not changes and token is None:
            return AccountRead.model_validate(row)
        policy, registered = merged(row, changes)
        faults = policy_faults(policy, registered_at=registered, now=now, given=body.model_fields_set)
        if faults:
            raise _faults(faults)
        new_waba = changes.get("waba_id") if changes.get("waba_id") not in (None, row["waba_id"]) else None
        if token is not None or new_waba is not None:  # the number and its WABA proven with the token to keep
            proving = token
            if proving is None:
                async with engine.connect() as conn:
                    try:
                        proving = await accounts.token(conn, principal.tenant, account_id)
                    except LookupError:
                        raise ApiError(404, "not_found", f"no account {account_id}") from None
                    except UnreadableToken:
                        raise ApiError(422, "invalid_request", "invalid request", errors=[field_error(
                            "body.access_token", "the stored access token cannot be decrypted with "
                            "SCRM_SECRETS_KEY; give the access token together with the new waba_id")]) from None
            await verify(account_id, proving, new_waba or row["waba_id"])
        if new_waba is not None:
            async with engine.connect() as conn:
                try:
                    await accounts.waba_conflict(conn, principal.tenant, new_waba)
                except AccountConflict as exc:
                    raise ApiError(409, exc.code, exc.message) from None
        async with engine.begin() as conn:
            if changes.get("waba_id") is not None:
                await accounts.lock_waba(conn, changes["waba_id"])
                try:
                    await accounts.waba_conflict(conn, principal.tenant, changes["waba_id"])
                except AccountConflict as exc:
                    raise ApiError(409, exc.code, exc.message) from None
            locked = await accounts.locked(conn, principal.tenant, account_id)
            if locked is None:
                raise ApiError(404, "not_found", f"no account {account_id}")
            policy, registered = merged(locked, changes)  # what a concurrent change left, with this one
            faults = policy_faults(policy, registered_at=registered, now=now, given=body.model_fields_set)
            if faults:
                raise _faults(faults)
            await accounts.update(conn, principal.tenant, account_id,
                                  changes | ({"access_token": token} if token is not None else {}), now)
            rows = await send_log.accounts(conn, principal.tenant, now, account_id)
        on_commit()
        log.info("account %s changed: %s", account_id, ", ".join(sorted(body.model_fields_set)),
                 extra={"tenant": principal.tenant})
        return _account(rows, account_id)

    @router.delete("/v1/accounts/{account_id}", status_code=204, response_class=Response, tags=["accounts"],
                   responses=error_responses(404))
    async def delete_account(account_id: AccountId, principal: Admin) -> Response:
        """Remove an account from the tenant: its queued messages fail with "account removed" (their
        `message.status` failed is published), its restrictions go, and `account.removed` is published
        (ingest then routes nothing of the number to the tenant). Messages already handed to the Cloud
        API keep their outcome. 404 for a number the tenant does not have."""
        now = clock.now()
        async with engine.begin() as conn:
            failed = await accounts.delete(conn, principal.tenant, account_id, now)
            if failed is None:
                raise ApiError(404, "not_found", f"no account {account_id}")
            events = []
            for raw in failed:
                try:
                    events.append(outcome_event(stored_command(raw), status="failed", at=now,
                                                reason=REMOVED_REASON))
                except ValidationError:
                    log.warning("a queued message of account %s has no readable command; failed without an event",
                                account_id, extra={"tenant": principal.tenant})
            await enqueue(conn, events)
        on_commit()
        log.info("account %s removed; %d queued messages failed", account_id, len(failed),
                 extra={"tenant": principal.tenant})
        return Response(status_code=204)

    @router.get("/v1/messages", response_model=MessagesRead, tags=["send log"])
    async def messages(principal: Reader, contact: str | None = None,
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
                      principal: Reader) -> MessageRead:
        """One message of the send log by its idempotency key (R-S8); 404 when there is none."""
        if has_control_character(idempotency_key):
            raise ApiError(404, "not_found", "no such message")
        async with engine.connect() as conn:
            row = await send_log.message(conn, principal.tenant, idempotency_key)
        if row is None:
            raise ApiError(404, "not_found", "no such message")
        return MessageRead.model_validate(row)

    @router.get("/v1/invalid-numbers", response_model=InvalidNumbersRead, tags=["invalid numbers"])
    async def invalid_numbers(principal: Reader, include_expired: bool = False) -> InvalidNumbersRead:
        """Numbers marked invalid (R-S7) with the error code, when marked and when the mark expires.

        Only marks in force unless `include_expired=true`; a marked number's messages are refused.
        """
        async with engine.connect() as conn:
            rows = await send_log.list_invalid_numbers(conn, principal.tenant, clock.now(),
                                                       include_expired=include_expired)
        return InvalidNumbersRead(tenant=principal.tenant,
                                  invalid_numbers=[InvalidNumberRead.model_validate(r) for r in rows])

    @router.delete("/v1/invalid-numbers/{phone}", status_code=204, response_class=Response, tags=["invalid numbers"],
                   responses=error_responses(404, 422))
    async def unmark(phone: Annotated[str, Path(description="the number in any form (`+4915112345678`, `4915…`)",
                                                examples=["+4915112345678"])],
                     principal: Admin) -> Response:
        """Remove a number's invalid mark so later messages to it are sent again.

        404 `not_marked` when the number carries no mark; 422 `invalid_phone` when it is no phone number.
        """
        number = _phone(phone)
        async with engine.begin() as conn:
            removed = await send_log.delete_invalid_number(conn, principal.tenant, number)
        if not removed:
            raise ApiError(404, "not_marked", f"{number} is not marked invalid")
        return Response(status_code=204)

    return router
