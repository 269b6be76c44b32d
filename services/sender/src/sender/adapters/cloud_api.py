"""The WhatsApp Cloud API client: CLOUD-API.md's wire format, pooled HTTP/1.1 keep-alive."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from typing import Any

import httpx

from scrm_common.contracts.commands import SendMessage


@dataclass(frozen=True, slots=True)
class Accepted:
    wamid: str


@dataclass(frozen=True, slots=True)
class Rejected:
    code: int | None
    http_status: int
    details: str


@dataclass(frozen=True, slots=True)
class NotSent:
    """The request never left: safe to retry."""

    reason: str


@dataclass(frozen=True, slots=True)
class Unknown:
    """The request may have reached the provider (timeout, dropped connection)."""

    reason: str


Result = Accepted | Rejected | NotSent | Unknown


def message_body(command: SendMessage) -> dict[str, Any]:
    """The `/messages` body for a command; the idempotency key rides along as callback data."""
    body: dict[str, Any] = {
        "messaging_product": "whatsapp",
        "recipient_type": "individual",
        "to": command.to,
        "biz_opaque_callback_data": command.idempotency_key,
    }
    if command.template is not None:
        template: dict[str, Any] = {"name": command.template.name,
                                    "language": {"code": command.template.language, "policy": "deterministic"}}
        if command.template.parameters:
            template["components"] = [{"type": "body", "parameters": [
                {"type": "text", "text": p} for p in command.template.parameters]}]
        body |= {"type": "template", "template": template}
    else:
        body |= {"type": "text", "text": {"body": command.text, "preview_url": True}}
    return body


class CloudApiClient:
    """POST {base}/{version}/{phone_number_id}/messages with the account's bearer token."""

    def __init__(self, *, base_url: str, version: str, timeout: float, max_connections: int) -> None:
        self._version = version
        # Never more requests in flight than pooled connections: a queue inside the pool costs CPU
        # per queued request and holds back the batch's settlement.
        self._in_flight = asyncio.Semaphore(max_connections)
        self._client = httpx.AsyncClient(
            base_url=base_url.rstrip("/"), http1=True, http2=False,
            timeout=httpx.Timeout(timeout, connect=min(timeout, 5.0)),
            limits=httpx.Limits(max_connections=max_connections, max_keepalive_connections=max_connections,
                                keepalive_expiry=60.0),
        )

    async def send(self, *, phone_number_id: str, access_token: str, body: dict[str, Any]) -> Result:
        try:
            async with self._in_flight:
                resp = await self._client.post(f"/{self._version}/{phone_number_id}/messages", json=body,
                                               headers={"Authorization": f"Bearer {access_token}"})
        except (httpx.ConnectError, httpx.ConnectTimeout, httpx.PoolTimeout) as exc:
            return NotSent(f"{type(exc).__name__}: {exc}")
        except httpx.HTTPError as exc:
            return Unknown(f"{type(exc).__name__}: {exc}")
        try:
            payload = resp.json()
        except ValueError:
            payload = None
        if resp.status_code == 200 and isinstance(payload, dict):
            messages = payload.get("messages") or []
            if messages and isinstance(messages[0], dict) and messages[0].get("id"):
                return Accepted(str(messages[0]["id"]))
            return Unknown("200 without a message id")
        error = payload.get("error") if isinstance(payload, dict) else None
        if isinstance(error, dict):
            code = error.get("code")
            details = (error.get("error_data") or {}).get("details") or error.get("message") or ""
            number = code if isinstance(code, int) else int(code) if isinstance(code, str) and code.isdecimal() \
                and code.isascii() else None
            return Rejected(number, resp.status_code, str(details)[:500])
        return Rejected(None, resp.status_code, resp.text[:200])

    async def aclose(self) -> None:
        await self._client.aclose()
