"""Every trigger-engine route declares the roles it needs (READ for reads, ADMIN for changes), and the settings
routes document their bodies and say how a change takes effect."""

from __future__ import annotations

from typing import Any

import pytest
from fastapi import FastAPI
from fastapi.routing import APIRoute

from scrm_common.http import KeyIntrospection, declared_roles, service_app
from trigger_engine.adapters.db import EngineRepository
from trigger_engine.adapters.http import build_router
from trigger_engine.adapters.settings_http import build_settings_router

ROUTES = {
    ("GET", "/v1/contacts/{contact}/decisions"): ("read", "admin"),
    ("GET", "/v1/flows"): ("read", "admin"),
    ("GET", "/v1/flows/{flow}"): ("read", "admin"),
    ("PUT", "/v1/flows/{flow}"): ("admin",),
    ("PATCH", "/v1/flows/{flow}"): ("admin",),
    ("GET", "/v1/flows/{flow}/history"): ("read", "admin"),
    ("GET", "/v1/settings"): ("read", "admin"),
    ("PATCH", "/v1/settings"): ("admin",),
    ("GET", "/v1/settings/history"): ("read", "admin"),
}


def _app() -> FastAPI:
    keys = KeyIntrospection("http://ingest", internal_token="t")
    app = service_app("trigger-engine", "test")
    app.include_router(build_router(engine=None, repository=EngineRepository(), keys=keys))  # type: ignore[arg-type]
    app.include_router(build_settings_router(service=None, keys=keys))  # type: ignore[arg-type]
    return app


def test_every_route_declares_its_roles() -> None:
    keys = KeyIntrospection("http://ingest", internal_token="t")
    routers = [build_router(engine=None, repository=EngineRepository(), keys=keys),  # type: ignore[arg-type]
               build_settings_router(service=None, keys=keys)]  # type: ignore[arg-type]
    declared = {(method, route.path): declared_roles(route) for router in routers for route in router.routes
                if isinstance(route, APIRoute) for method in route.methods}
    assert declared == ROUTES


@pytest.mark.parametrize(("method", "path"), [("put", "/v1/flows/{flow}"), ("patch", "/v1/flows/{flow}"),
                                              ("patch", "/v1/settings")])
def test_changes_document_their_body_errors_and_when_they_take_effect(method: str, path: str) -> None:
    spec: dict[str, Any] = _app().openapi()
    operation = spec["paths"][path][method]
    body = operation["requestBody"]["content"]["application/json"]["schema"]
    if path == "/v1/settings":  # one model: its schema inline
        assert body["title"] == "TenantSettings" and body["additionalProperties"] is False
    else:
        refs = {s["$ref"].rsplit("/", 1)[1] for s in body["anyOf"]}
        assert refs == {"WelcomeSettings", "OrderConfirmationSettings", "AntiFraudSettings", "ShipmentSettings",
                        "AbandonedCartSettings", "PriceDropSettings"}
        assert all(spec["components"]["schemas"][ref]["additionalProperties"] is False for ref in refs)
    assert {"401", "413", "422"} <= set(operation["responses"])
    assert "without a restart" in operation["description"]
    if method == "patch":
        assert "RFC 7396" in operation["description"]
