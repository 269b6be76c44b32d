"""The simulator's API docs come from local assets like the services' (no CDN), and its Graph API errors keep
Meta's shape."""

from __future__ import annotations

import httpx
import pytest

from whatsapp_sim.app import create_app
from whatsapp_sim.config import SimulatorSettings

EXTERNAL = ("cdn.", "googleapis", "tiangolo")


async def _get(path: str) -> httpx.Response:
    app = create_app(SimulatorSettings())
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://sim") as client:
        return await client.get(path)


@pytest.mark.parametrize(("page", "asset"), [("/docs", "swagger-ui-bundle.js"), ("/redoc", "redoc.standalone.js")])
async def test_docs_reference_no_external_url_and_their_assets_are_served(page: str, asset: str) -> None:
    resp = await _get(page)
    assert resp.status_code == 200
    assert f"/static-offline-docs/{asset}" in resp.text
    for external in EXTERNAL:
        assert external not in resp.text, external
    served = await _get(f"/static-offline-docs/{asset}")  # not taken for a Graph `/{version}/{phone_number_id}`
    assert served.status_code == 200 and len(served.content) > 100_000


async def test_graph_errors_keep_their_shape() -> None:
    resp = await _get("/v21.0/123456789")  # no access token
    assert resp.status_code == 401
    assert "error" in resp.json() and "errors" not in resp.json()
