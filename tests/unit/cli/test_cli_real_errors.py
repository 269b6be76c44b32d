"""`scrm` against a small FastAPI app built with the services' own `service_app` and `KeyIntrospection`: the
error bodies the CLI renders are the real ones (validation errors per field, the role's 403, the 401), not a
fake's idea of them."""

# No `from __future__ import annotations`: FastAPI must see the dependency annotations built here.

import asyncio
import json
from collections.abc import Iterator
from typing import Annotated, Any

import httpx
import pytest
from fastapi import Depends
from pydantic import BaseModel, ConfigDict, Field
from typer.testing import CliRunner

from scrm_cli import api as cli_api
from scrm_cli.main import app as scrm
from scrm_common.http import ADMIN, READ, KeyIntrospection, Principal, service_app

KEYS = {"k-admin": ("acme", "admin"), "k-read": ("acme", "read")}


class FlowPatch(BaseModel):
    """Stands in for a flow's settings patch: unknown keys and out-of-range values are refused."""

    model_config = ConfigDict(extra="forbid")
    enabled: bool | None = None
    delay_minutes: int | None = Field(default=None, ge=0)


def _keys() -> KeyIntrospection:
    def introspect(request: httpx.Request) -> httpx.Response:
        found = KEYS.get(json.loads(request.content)["api_key"])
        if found is None:
            return httpx.Response(404, json={"error": {"code": "not_found", "message": "unknown key"}})
        return httpx.Response(200, json={"tenant": found[0], "role": found[1], "key_id": "key_1"})

    return KeyIntrospection("http://ingest.test", internal_token="t",
                            client=httpx.AsyncClient(transport=httpx.MockTransport(introspect)))


def _app() -> Any:
    keys = _keys()
    app = service_app("flows under test", "0")
    stored: dict[str, Any] = {"enabled": True, "delay_minutes": 0}

    @app.get("/v1/flows/{flow}")
    async def show(flow: str, caller: Annotated[Principal, Depends(keys.require(READ))]) -> dict[str, Any]:
        return {"flow": flow, "version": 1, "settings": stored}

    @app.patch("/v1/flows/{flow}")
    async def change(flow: str, body: FlowPatch,
                     caller: Annotated[Principal, Depends(keys.require(ADMIN))]) -> dict[str, Any]:
        stored.update(body.model_dump(exclude_unset=True))
        return {"flow": flow, "version": 2, "settings": stored}

    return app


def _asgi(app: Any) -> httpx.MockTransport:
    """A sync transport into an ASGI app (the CLI's client is synchronous; each request runs its own loop)."""
    def handle(request: httpx.Request) -> httpx.Response:
        async def go() -> httpx.Response:
            async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://app") as client:
                return await client.request(request.method, request.url.path, params=request.url.params,
                                            content=request.content, headers=request.headers)
        answer = asyncio.run(go())
        return httpx.Response(answer.status_code, headers={"content-type": answer.headers.get("content-type", "")},
                              content=answer.content)
    return httpx.MockTransport(handle)


@pytest.fixture(autouse=True)
def real_app(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    monkeypatch.setattr(cli_api, "TRANSPORT", _asgi(_app()))
    yield


def run(*args: str, key: str = "k-admin") -> Any:
    return CliRunner().invoke(scrm, list(args), env={"SCRM_API_KEY": key, "COLUMNS": "200"})


def test_a_refused_patch_names_every_field_and_changes_nothing() -> None:
    result = run("flows", "set", "order_confirmation", "delay_minutes=-5", "colour=red")
    assert result.exit_code == 1
    lines = result.stderr.splitlines()
    assert lines[0].startswith("error: HTTP 422 ")
    assert any(line.strip().startswith("body.delay_minutes:") for line in lines[1:]), result.stderr
    assert any(line.strip().startswith("body.colour:") for line in lines[1:]), result.stderr
    shown = json.loads(run("flows", "show", "order_confirmation", "--json").stdout)
    assert shown["settings"] == {"enabled": True, "delay_minutes": 0}


def test_an_accepted_patch_is_shown() -> None:
    result = run("flows", "set", "order_confirmation", "enabled=false", "delay_minutes=15")
    assert result.exit_code == 0, result.output
    assert json.loads(run("--json", "flows", "show", "x").stdout)["settings"] == {"enabled": False,
                                                                                   "delay_minutes": 15}


@pytest.mark.parametrize(("key", "message"), [
    ("k-read", "HTTP 403 forbidden: a key with role 'read' may not do this; it needs role 'admin'"),
    ("k-nobody", "HTTP 401 unauthorized: unknown API key"),
])
def test_the_role_and_key_refusals_are_the_apis_words(key: str, message: str) -> None:
    result = run("flows", "set", "order_confirmation", "enabled=false", key=key)
    assert result.exit_code == 1
    assert message in result.stderr
