"""The FastAPI app: Graph API routes, `/_sim` inspection routes and operations endpoints."""

from __future__ import annotations

import json
import random
import time
from collections.abc import Callable
from typing import Any

import httpx
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse
from fastapi_offline import FastAPIOffline

from scrm_common.http import RequestContext, ops_router
from scrm_common.observability.metrics import new_registry
from whatsapp_sim.config import SimulatorSettings
from whatsapp_sim.domain.templates import TemplateCatalog, template_id
from whatsapp_sim.domain.validation import normalize_recipient
from whatsapp_sim.simulator import ApiError, Reply, Simulator


def _token(request: Request) -> str | None:
    """The access token: `Authorization: Bearer …`, or Graph's `?access_token=`."""
    scheme, _, token = request.headers.get("authorization", "").partition(" ")
    if scheme.lower() == "bearer" and token.strip():
        return token.strip()
    return request.query_params.get("access_token") or None


def _respond(reply: Reply) -> JSONResponse:
    status, body = reply
    headers = {}
    if status == 401:
        headers["WWW-Authenticate"] = 'OAuth "Facebook Platform" "invalid_token" "Invalid OAuth access token"'
    return JSONResponse(body, status_code=status, headers=headers)


async def _json(request: Request) -> Any:
    try:
        return json.loads(await request.body() or b"{}")
    except (UnicodeDecodeError, json.JSONDecodeError):
        raise ApiError(400, "body must be JSON") from None


def create_app(
    settings: SimulatorSettings | None = None,
    *,
    catalog: TemplateCatalog | None = None,
    http_client: httpx.AsyncClient | None = None,
    wall: Callable[[], float] = time.time,
    mono: Callable[[], float] = time.monotonic,
    rng: random.Random | None = None,
    click_client: httpx.AsyncClient | None = None,
) -> FastAPI:
    """Build a simulator app; its state lives in `app.state.simulator` (run its `run` loop for webhooks)."""
    settings = settings or SimulatorSettings()
    registry = new_registry()
    sim = Simulator(settings, registry=registry, catalog=catalog, http_client=http_client, wall=wall, mono=mono,
                    rng=rng, click_client=click_client)
    # Swagger UI (/docs) and ReDoc (/redoc) from the fastapi-offline package's local assets, like the services.
    app = FastAPIOffline(title="WhatsApp Cloud API simulator", version="0.1.0")
    # Correlation ids, a JSON 500 and the access log like the services; its Graph API errors keep Meta's shape.
    app.add_middleware(RequestContext, refuse_control_characters=False)
    app.state.simulator = sim
    app.include_router(ops_router(registry, sim.ready))

    @app.exception_handler(ApiError)
    async def api_error(_request: Request, exc: ApiError) -> JSONResponse:
        return JSONResponse({"error": str(exc)}, status_code=exc.status)

    @app.get("/_sim/messages")
    async def messages(to: str | None = None, phone_number_id: str | None = None, since_seq: int = 0,
                       limit: int | None = None) -> dict[str, Any]:
        wa_id = None
        if to is not None:
            digits = normalize_recipient(to)
            wa_id = sim.wa_ids.wa_id_for(digits) if digits else to
        records = sim.store.messages(wa_id=wa_id, phone_number_id=phone_number_id, since_seq=since_seq,
                                     limit=limit)
        return {"count": len(records), "last_seq": sim.store.last_seq,
                "messages": [record.to_dict() for record in records]}

    @app.get("/_sim/stats")
    async def stats() -> dict[str, Any]:
        return sim.stats()

    @app.get("/_sim/rejections")
    async def rejections() -> dict[str, Any]:
        items = sim.store.rejections()
        return {"count": len(items), "rejections": items}

    @app.get("/_sim/inbound")
    async def inbound_log() -> dict[str, Any]:
        items = sim.store.inbound()
        return {"count": len(items), "inbound": items}

    @app.post("/_sim/inbound")
    async def inbound(request: Request) -> dict[str, Any]:
        return sim.inbound(await _body_object(request))

    @app.post("/_sim/user_preferences")
    async def user_preferences(request: Request) -> dict[str, Any]:
        return sim.user_preferences(await _body_object(request))

    @app.get("/_sim/templates")
    async def templates(waba_id: str | None = None) -> dict[str, Any]:
        """The catalog of a WABA (default: the first number's), with each template's id there."""
        waba = waba_id or sim.waba_of(next(iter(sim.accounts)))
        catalog = sim.catalogs.get(waba)
        if catalog is None:
            raise ApiError(404, f"unknown WABA {waba}")
        return {"waba_id": waba, "templates": [t.to_dict() | {"id": template_id(waba, t.name, t.language)}
                                               for t in catalog.all()]}

    @app.post("/_sim/templates")
    async def upsert_templates(request: Request, waba_id: str | None = None) -> dict[str, Any]:
        """Add or replace templates in a WABA's catalog (every WABA's without `waba_id`); no webhook."""
        return {"templates": sim.upsert_templates(await _json(request), waba_id)}

    @app.post("/_sim/templates/{waba_id}/{name}/status")
    async def template_status(waba_id: str, name: str, request: Request) -> dict[str, Any]:
        """Change a template's status as Meta would — {"status": "PAUSED"|"APPROVED"|"DISABLED"|"REJECTED"|
        "PENDING"|"FLAGGED"|"REINSTATED", "language"?, "reason"?} — and send the signed
        `message_template_status_update` webhook (one per language changed)."""
        return sim.set_template_status(waba_id, name, await _body_object(request))

    @app.post("/_sim/reset")
    async def reset() -> dict[str, Any]:
        sim.reset()
        return {"reset": True}

    @app.post("/{version}/{phone_number_id}/messages")
    async def send(version: str, phone_number_id: str, request: Request) -> JSONResponse:
        return _respond(sim.send(version, phone_number_id, _token(request), await request.body()))

    @app.get("/{version}/{waba_id}/message_templates")
    async def message_templates(version: str, waba_id: str, request: Request) -> JSONResponse:
        return _respond(sim.message_templates(version, waba_id, _token(request), request.query_params))

    @app.get("/{version}/{waba_id}/phone_numbers")
    async def phone_numbers(version: str, waba_id: str, request: Request) -> JSONResponse:
        """The WABA's phone numbers (`data` of {id, display_phone_number, verified_name, …}, paged)."""
        return _respond(sim.phone_numbers(version, waba_id, _token(request), request.query_params))

    @app.get("/{version}/{phone_number_id}")
    async def phone_number(version: str, phone_number_id: str, request: Request,
                           fields: str | None = None) -> JSONResponse:
        return _respond(sim.phone_number(version, phone_number_id, _token(request), fields))

    return app


async def _body_object(request: Request) -> dict[str, Any]:
    body = await _json(request)
    if not isinstance(body, dict):
        raise ApiError(400, "body must be a JSON object")
    return body
