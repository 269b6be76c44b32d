"""Every route of ingest says who may call it (`x-scrm-roles`), with request and response models and errors."""

from __future__ import annotations

from typing import Any

import pytest
from fastapi import FastAPI
from fastapi.routing import APIRoute, _iter_included_route_candidates
from prometheus_client import CollectorRegistry

from ingest.adapters.admin_http import build_admin_router
from ingest.adapters.auth import TenantKeys
from ingest.adapters.http import IngestMetrics, build_router
from ingest.adapters.kafka import EventPublisher
from ingest.config import Settings
from scrm_common.clock import FixedClock
from scrm_common.http import ROLES_EXTENSION, declared_roles, ops_router, service_app
from tests.unit.ingest.test_ingest_http import NOW, Directory, Producer


def _app() -> FastAPI:
    """The app as `ingest.main` builds it."""
    directory, registry = Directory(), CollectorRegistry()
    keys = TenantKeys(directory)
    app = service_app("scrm ingest", "0.1.0")
    app.include_router(build_router(settings=Settings(), directory=directory,  # type: ignore[arg-type]
                                    publisher=EventPublisher(Producer()), clock=FixedClock(NOW),  # type: ignore[arg-type]
                                    metrics=IngestMetrics(registry), keys=keys))
    app.include_router(build_admin_router(admin_token="t", directory=directory, keys=keys))  # type: ignore[arg-type]
    app.include_router(ops_router(registry, directory.ping))
    return app


def _openapi() -> dict[str, Any]:
    return _app().openapi()


OPERATOR = ["operator"]
EXPECTED_ROLES = {
    ("post", "/v1/events"): ["events", "admin"],
    ("get", "/v1/webhooks/whatsapp"): ["meta-verify-token"],
    ("post", "/v1/webhooks/whatsapp"): ["meta-signature"],
    ("post", "/v1/admin/tenants"): OPERATOR,
    ("get", "/v1/admin/tenants"): OPERATOR,
    ("get", "/v1/admin/tenants/{tenant}"): OPERATOR,
    ("patch", "/v1/admin/tenants/{tenant}"): OPERATOR,
    ("post", "/v1/admin/tenants/{tenant}/keys"): OPERATOR,
    ("get", "/v1/admin/tenants/{tenant}/keys"): OPERATOR,
    ("delete", "/v1/admin/tenants/{tenant}/keys/{id}"): OPERATOR,
    ("post", "/v1/keys"): ["admin"],
    ("get", "/v1/keys"): ["admin"],
    ("delete", "/v1/keys/{id}"): ["admin"],
}
OPS = {("get", "/healthz"), ("get", "/readyz"), ("get", "/metrics")}


def test_every_route_declares_its_roles() -> None:
    """What each route's dependencies declare (`scrm_roles`), or its `openapi_extra` for Meta's routes."""
    found: dict[tuple[str, str], list[str] | None] = {}
    for route in _iter_included_route_candidates(_app().routes):
        if isinstance(route, APIRoute) and route.include_in_schema and not route.path.startswith(("/docs", "/redoc")):
            roles = declared_roles(route)
            extra = (route.openapi_extra or {}).get(ROLES_EXTENSION)
            for method in route.methods:
                found[(method.lower(), route.path_format)] = list(roles) if roles is not None else extra
    assert {k: v for k, v in found.items() if k not in OPS} == EXPECTED_ROLES
    assert all(found[k] is None for k in OPS)


def test_the_openapi_names_every_routes_roles_and_nothing_else_is_served() -> None:
    paths = _openapi()["paths"]
    found = {(method, path): op.get("x-scrm-roles") for path, ops in paths.items() for method, op in ops.items()}
    assert set(found) == set(EXPECTED_ROLES) | OPS
    assert {k: v for k, v in found.items() if k not in OPS} == EXPECTED_ROLES
    assert all(found[k] is None for k in OPS)
    assert "/internal/v1/keys/introspect" not in paths  # internal: not part of the public description


@pytest.mark.parametrize(("method", "path", "scheme", "statuses"), [
    ("post", "/v1/admin/tenants", "OperatorToken", {"201", "401", "409", "422"}),
    ("patch", "/v1/admin/tenants/{tenant}", "OperatorToken", {"200", "401", "404", "422"}),
    ("post", "/v1/admin/tenants/{tenant}/keys", "OperatorToken", {"201", "401", "404", "409", "422"}),
    ("delete", "/v1/admin/tenants/{tenant}/keys/{id}", "OperatorToken", {"204", "401", "404"}),
    ("post", "/v1/keys", "TenantApiKey", {"201", "401", "403", "422"}),
    ("get", "/v1/keys", "TenantApiKey", {"200", "401", "403"}),
    ("post", "/v1/events", "TenantApiKey", {"202", "401", "403", "422"}),
])
def test_tenant_and_key_routes_document_their_scheme_and_errors(method: str, path: str, scheme: str,
                                                                statuses: set[str]) -> None:
    op = _openapi()["paths"][path][method]
    assert op["security"] == [{scheme: []}]
    assert statuses <= set(op["responses"])
    assert op["description"].startswith("**Needs** ")
    assert op["tags"] in (["tenants"], ["keys"], ["events"])


@pytest.mark.parametrize(("model", "fields"), [
    ("TenantRead", {"tenant", "name", "status", "created_at", "disabled_at"}),
    ("KeyIssued", {"id", "key", "prefix", "role", "label", "created_at"}),
    ("KeyRead", {"id", "prefix", "role", "label", "created_at", "last_used_at", "revoked_at", "bootstrap"}),
])
def test_response_models_have_their_fields_a_description_and_an_example(model: str, fields: set[str]) -> None:
    schema = _openapi()["components"]["schemas"][model]
    assert set(schema["properties"]) == fields
    assert schema["description"] and schema["examples"]


def test_key_list_answers_never_carry_the_key() -> None:
    schemas = _openapi()["components"]["schemas"]
    assert "key" not in schemas["KeyRead"]["properties"]
    assert schemas["KeyList"]["properties"]["keys"]["items"] == {"$ref": "#/components/schemas/KeyRead"}
