"""The sender's send log, asked over HTTP for the messages decided for one person (their story, issue 8 item 4).

The sender owns what became of each message (ARCHITECTURE.md: no service reads another's tables). The story
asks `GET {SCRM_SENDER_URL}/v1/messages?contact=<person>&limit=…` (READ role) with the caller's own
`Authorization` header — it sees exactly what the caller's key may see and needs no credentials of its own —
and, for decided keys that list does not hold (a person merged from another, whose messages carry the old
contact key; a log longer than the limit), `GET /v1/messages/{idempotency_key}` each (at most
`MAX_SINGLE_LOOKUPS`, concurrently). The whole asking is bounded by `timeout_seconds` (2 s): a sender that is
down, slow or answers something unreadable makes the story say `send_log: "unavailable"`, never a 500.

Records are read leniently (`logged`): a field the sender does not send yet (before the send gate's fields)
or cannot be read is None, so an older or newer sender never breaks the story.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Collection, Mapping
from datetime import UTC, datetime
from typing import Any
from urllib.parse import quote

import httpx

from trigger_engine.domain.story import Logged

log = logging.getLogger(__name__)

# How long the story waits for the sender, in seconds, before answering without it.
TIMEOUT_SECONDS = 2.0
# The sender's `limit` bound on GET /v1/messages.
MAX_LIST = 1000
# Decided keys missing from the contact's list asked one by one, at most this many per story.
MAX_SINGLE_LOOKUPS = 50


class SendLogUnavailable(Exception):
    """The sender could not be asked within the time limit, or answered with something that is no send log."""


class SendLog:
    """Reads the sender's records of a person's messages: `GET {sender_url}/v1/messages`.

    `client`: an httpx.AsyncClient to use (tests pass one with a MockTransport); made here otherwise and
    closed by `aclose`. Construct once per process: `SendLog(settings.sender_url)`.
    """

    def __init__(self, sender_url: str, *, client: httpx.AsyncClient | None = None,
                 timeout_seconds: float = TIMEOUT_SECONDS) -> None:
        self._url = sender_url.rstrip("/") + "/v1/messages"
        self._client = client or httpx.AsyncClient(timeout=timeout_seconds)
        self._timeout = timeout_seconds

    async def records(self, contact: str, keys: Collection[str], *, authorization: str) -> dict[str, Logged]:
        """idempotency key → the sender's record, for those of `keys` the sender knows (a key it does not know
        is absent). `contact`: the person's contact key, as the engine handed it to the sender;
        `authorization`: the caller's `Authorization` header value (`Bearer scrm_…`).

        Raises SendLogUnavailable when the sender does not answer within the time limit (all requests
        together), cannot be reached, or answers anything but 200 with a message list (404 for a single key
        means "not known")."""
        wanted = set(keys)
        if not wanted:
            return {}
        try:
            async with asyncio.timeout(self._timeout):
                return await self._records(contact, wanted, authorization)
        except TimeoutError:
            log.warning("the sender's send log did not answer within %.1f s", self._timeout)
            raise SendLogUnavailable("the sender did not answer in time") from None
        except httpx.HTTPError as exc:
            log.warning("the sender's send log cannot be reached: %s", type(exc).__name__)
            raise SendLogUnavailable("the sender cannot be reached") from None

    async def _records(self, contact: str, wanted: set[str], authorization: str) -> dict[str, Logged]:
        headers = {"Authorization": authorization}
        resp = await self._client.get(self._url, params={"contact": contact, "limit": MAX_LIST}, headers=headers)
        if resp.status_code != 200:
            log.warning("the sender answered HTTP %s to the send log of a contact", resp.status_code)
            raise SendLogUnavailable(f"the sender answered HTTP {resp.status_code}")
        body = _json(resp)
        rows = body.get("messages") if isinstance(body, dict) else None
        if not isinstance(rows, list):
            log.warning("the sender's send log answered without a message list")
            raise SendLogUnavailable("the sender's send log could not be read")
        found: dict[str, Logged] = {}
        for row in rows:
            record = logged(row)
            if record is not None and record.idempotency_key in wanted:
                found.setdefault(record.idempotency_key, record)  # newest first: the first is the current row
        missing = sorted(wanted - found.keys())[:MAX_SINGLE_LOOKUPS]
        for record in await asyncio.gather(*(self._one(key, headers) for key in missing)):
            if record is not None:
                found[record.idempotency_key] = record
        return found

    async def _one(self, key: str, headers: Mapping[str, str]) -> Logged | None:
        resp = await self._client.get(f"{self._url}/{quote(key, safe='')}", headers=headers)
        if resp.status_code == 404:
            return None
        if resp.status_code != 200:
            log.warning("the sender answered HTTP %s to one message of the send log", resp.status_code)
            raise SendLogUnavailable(f"the sender answered HTTP {resp.status_code}")
        return logged(_json(resp))

    async def aclose(self) -> None:
        """Close the HTTP client (also one passed in)."""
        await self._client.aclose()


def _json(resp: httpx.Response) -> Any:
    try:
        return resp.json()
    except ValueError:
        return None


def logged(row: Any) -> Logged | None:
    """One message of the sender's `GET /v1/messages` as a `Logged`, read leniently: None for a row without
    an idempotency key (no record at all); any other field missing, of the wrong type or unparseable is None.
    Instants: ISO 8601 with an offset, returned aware UTC (naive ones are taken as UTC)."""
    if not isinstance(row, dict):
        return None
    key = row.get("idempotency_key")
    if not isinstance(key, str) or not key:
        return None
    return Logged(idempotency_key=key, state=_text(row.get("state")), rule=_text(row.get("rule")),
                  error_reason=_text(row.get("error_reason")), error_code=_int(row.get("error_code")),
                  held_by=_text(row.get("held_by")), queued_at=_instant(row.get("queued_at")),
                  sent_at=_instant(row.get("sent_at")), deferred_until=_instant(row.get("deferred_until")),
                  expires_at=_instant(row.get("expires_at")), suppressed_at=_instant(row.get("suppressed_at")),
                  delivered_at=_instant(row.get("delivered_at")), read_at=_instant(row.get("read_at")))


def _text(value: Any) -> str | None:
    return value if isinstance(value, str) and value else None


def _int(value: Any) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def _instant(value: Any) -> datetime | None:
    if not isinstance(value, str):
        return None
    try:
        parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return None
    return parsed.replace(tzinfo=UTC) if parsed.tzinfo is None else parsed.astimezone(UTC)
