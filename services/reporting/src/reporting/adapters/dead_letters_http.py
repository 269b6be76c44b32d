"""HTTP routes of the dead-letter store: list, show and replay the caller's tenant's dead letters."""

# No `from __future__ import annotations`: FastAPI must see the dependency annotations built here.
from datetime import datetime
from typing import Annotated, Any, Literal

from aiokafka import AIOKafkaProducer
from fastapi import APIRouter, Depends, Path, Query
from pydantic import BaseModel, Field

from reporting.dead_letters import DeadLetterMetrics, DeadLetterStore, Republished, StoredDeadLetter
from reporting.domain.dead_letters import AlreadyReplayed, NotReplayable, replay_headers, show_bytes
from scrm_common.clock import Clock
from scrm_common.http import (
    ADMIN,
    KEY_ERRORS,
    READ,
    ApiError,
    KeyIntrospection,
    Principal,
    error_responses,
    field_error,
)
from scrm_common.runtime import INTAKE

MAX_ID = 2**63 - 1  # PostgreSQL bigint

Encoding = Literal["json", "utf-8", "base64", "none"]


class RecordHeader(BaseModel):
    name: str
    value: str | None = Field(description="the header's bytes as UTF-8 text, or base64 (see encoding)")
    encoding: Encoding


class OriginalRecord(BaseModel):
    """The record as it was on its topic; key and headers as text or base64, the value as JSON when it parses."""

    topic: str
    partition: int
    offset: int
    key: str | None
    key_encoding: Encoding
    headers: list[RecordHeader] = Field(description="the original headers, without `dead_letter`")
    value: Any = Field(description="the value: parsed JSON, UTF-8 text, or base64 (see value_encoding); null "
                                   "when truncated")
    value_encoding: Encoding
    truncated: bool = Field(False, description="true when the record was too large to keep whole: its value was left "
                                        "out (value_encoding `none`) and it cannot be replayed")
    value_size: int | None = Field(None, description="the original value's size in bytes, when truncated")
    value_sha256: str | None = Field(None, description="the original value's SHA-256 (hex), when truncated")


class DeadLetterSummary(BaseModel):
    """One dead letter: who gave up on which record, when and why."""

    id: int
    service: str | None = Field(description="the consumer group that gave up (null in records before issue 6)")
    failure: str | None = Field(description="deterministic (could never succeed) or exhausted (tries ran out)")
    error: str
    tries: int | None
    source_topic: str
    source_partition: int
    source_offset: int
    event_id: str | None
    event_type: str | None
    contact: str | None = Field(description="the contact key the event names, when it names one")
    dead_lettered_at: datetime
    replayed_at: datetime | None
    replay_count: int
    truncated: bool = Field(False, description="the record was too large to keep whole: value missing, no replay")


class DeadLetterPage(BaseModel):
    dead_letters: list[DeadLetterSummary] = Field(description="newest first")
    next_cursor: str | None = Field(description="pass as `cursor` for the next page; null on the last one")


class DeadLetterDetail(DeadLetterSummary):
    tenant: str
    original: OriginalRecord


class ReplayPlace(BaseModel):
    topic: str
    partition: int
    offset: int


class ReplayResult(BaseModel):
    dead_letter: DeadLetterDetail
    republished: ReplayPlace = Field(description="where the record was republished (acks=all)")


def summary(stored: StoredDeadLetter) -> DeadLetterSummary:
    """The list view of a stored dead letter."""
    d = stored.letter
    return DeadLetterSummary(
        id=stored.id, service=d.service, failure=d.failure, error=d.error, tries=d.tries,
        source_topic=d.source_topic, source_partition=d.source_partition, source_offset=d.source_offset,
        event_id=d.event_id, event_type=d.event_type, contact=d.contact_key, dead_lettered_at=d.dead_lettered_at,
        replayed_at=stored.replayed_at, replay_count=stored.replay_count, truncated=d.truncated)


def detail(stored: StoredDeadLetter) -> DeadLetterDetail:
    """The full view of a stored dead letter, with its original record."""
    d = stored.letter
    key_encoding, key = show_bytes(d.key, as_json=False)
    value_encoding, value = show_bytes(d.value, as_json=True)
    headers = []
    for name, raw in d.headers:
        encoding, shown = show_bytes(raw, as_json=False)
        headers.append(RecordHeader(name=name, value=shown, encoding=encoding))
    original = OriginalRecord(topic=d.source_topic, partition=d.source_partition, offset=d.source_offset, key=key,
                              key_encoding=key_encoding, headers=headers, value=value, value_encoding=value_encoding,
                              truncated=d.truncated, value_size=d.value_size, value_sha256=d.value_sha256)
    return DeadLetterDetail(**summary(stored).model_dump(), tenant=d.tenant or "", original=original)


def _refuse_nul(field: str, value: str | None) -> None:
    if value is not None and "\x00" in value:
        raise ApiError(422, None, "invalid request", errors=[field_error(field, "must not contain NUL")])


def dead_letters_router(*, store: DeadLetterStore, keys: KeyIntrospection, producer: AIOKafkaProducer, clock: Clock,
                        metrics: DeadLetterMetrics) -> APIRouter:
    """`GET /v1/dead-letters`, `GET /v1/dead-letters/{id}` (role read or admin), `POST /v1/dead-letters/{id}/replay`
    (role admin).

    A tenant key sees its tenant's dead letters only; dead letters without a tenant are visible to no key.
    """
    router = APIRouter(tags=["dead letters"])
    Caller = Annotated[Principal, Depends(keys.require(READ))]
    Admin = Annotated[Principal, Depends(keys.require(ADMIN))]
    LetterId = Annotated[int, Path(ge=1, le=MAX_ID, description="the dead letter's id")]

    @router.get("/v1/dead-letters", response_model=DeadLetterPage, responses={**KEY_ERRORS, **error_responses(422)})
    async def list_dead_letters(
        caller: Caller,
        service: Annotated[str | None, Query(max_length=128, description="only this service's")] = None,
        event_type: Annotated[str | None, Query(alias="type", max_length=128, description="only this event type")]
        = None,
        replayed: Annotated[bool | None, Query(description="only replayed (true) or not replayed (false)")] = None,
        limit: Annotated[int, Query(ge=1, le=500)] = 50,
        cursor: Annotated[str | None, Query(max_length=32, description="next_cursor of the previous page")] = None,
    ) -> DeadLetterPage:
        """The caller's tenant's dead letters, newest first."""
        _refuse_nul("query.service", service)
        _refuse_nul("query.type", event_type)
        before = None
        if cursor is not None:
            if not cursor.isascii() or not cursor.isdigit() or not 1 <= int(cursor) <= MAX_ID:
                raise ApiError(422, None, "invalid request",
                               errors=[field_error("query.cursor", "not a cursor this API gave")])
            before = int(cursor)
        rows = await store.page(caller.tenant, service=service, event_type=event_type, replayed=replayed,
                                before=before, limit=limit + 1)
        page = rows[:limit]
        return DeadLetterPage(dead_letters=[summary(r) for r in page],
                              next_cursor=str(page[-1].id) if len(rows) > limit else None)

    @router.get("/v1/dead-letters/{letter_id}", response_model=DeadLetterDetail,
                responses={**KEY_ERRORS, **error_responses(404, 422)})
    async def show_dead_letter(caller: Caller, letter_id: LetterId) -> DeadLetterDetail:
        """One dead letter: the service, failure and error, when, and the original record."""
        stored = await store.get(caller.tenant, letter_id)
        if stored is None:
            raise ApiError(404, "not_found", f"no dead letter {letter_id}")
        return detail(stored)

    async def publish(stored: StoredDeadLetter) -> Republished:
        d = stored.letter
        sent = await producer.send_and_wait(d.source_topic, key=d.key, value=d.value,
                                            headers=replay_headers(d.headers))
        return Republished(topic=d.source_topic, partition=sent.partition, offset=sent.offset)

    @router.post("/v1/dead-letters/{letter_id}/replay", response_model=ReplayResult, responses={
        **KEY_ERRORS, **error_responses(404, 422),
        503: {**error_responses(503)[503], "description": "The stack is draining for a stop (code `draining`): "
                                                          "nothing was republished; retry after `Retry-After`."},
        409: {**error_responses(409)[409], "description": "Replayed before (code `already_replayed`; pass "
                                                          "`force=true`), or not replayable (`not_replayable`: "
                                                          "from the dead-letter topic, or truncated)."}})
    async def replay_dead_letter(
        caller: Admin, letter_id: LetterId,
        force: Annotated[bool, Query(description="replay even when it was replayed before")] = False,
    ) -> ReplayResult:
        """Republish the original record (key, value, headers without `dead_letter`) to its original topic
        with acks=all, and mark the dead letter replayed. Consumers apply an event once (by event_id), so a
        replay of something that was applied meanwhile has no second effect."""
        if not INTAKE.open:  # a record republished after the drain's last look would go with the broker
            raise ApiError(503, "draining", "the stack is stopping; nothing was republished, retry later",
                           headers={"Retry-After": "30"})
        try:
            done = await store.replay(caller.tenant, letter_id, force=force, now=clock.now(), publish=publish)
        except AlreadyReplayed as exc:
            raise ApiError(409, "already_replayed", str(exc)) from None
        except NotReplayable as exc:
            raise ApiError(409, "not_replayable", str(exc)) from None
        if done is None:
            raise ApiError(404, "not_found", f"no dead letter {letter_id}")
        stored, where = done
        metrics.replayed.labels(where.topic).inc()
        return ReplayResult(dead_letter=detail(stored),
                            republished=ReplayPlace(topic=where.topic, partition=where.partition, offset=where.offset))

    return router
