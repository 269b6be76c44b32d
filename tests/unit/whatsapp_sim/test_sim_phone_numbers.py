"""The simulator's `GET /{version}/{waba_id}/phone_numbers` (CLOUD-API §6.5 management API): a WABA's numbers,
paged, for a token of a number of that WABA only — what the sender asks to prove a WABA is the caller's."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest

from whatsapp_sim.app import create_app
from whatsapp_sim.config import SimulatorSettings

# two numbers in WABA 2001 (token of either), one in WABA 2002
ACCOUNTS = "1001:tok-a:15550001001:2001,1002:tok-b:15550001002:2001,1003:tok-c:15550001003:2002"


@pytest.fixture
async def client() -> AsyncIterator[httpx.AsyncClient]:
    app = create_app(SimulatorSettings(simulator_accounts=ACCOUNTS))
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://sim") as c:
        yield c


def _bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


async def test_a_wabas_numbers_are_listed_for_a_token_of_one_of_them(client: httpx.AsyncClient) -> None:
    for token in ("tok-a", "tok-b"):
        resp = await client.get("/v25.0/2001/phone_numbers", headers=_bearer(token))
        assert resp.status_code == 200, resp.text
        data = resp.json()["data"]
        assert [(n["id"], n["display_phone_number"]) for n in data] == [("1001", "15550001001"),
                                                                      ("1002", "15550001002")]
        assert all(n["verified_name"] == "SCRM Simulator" for n in data)
        assert "next" not in resp.json()["paging"]
    other = (await client.get("/v25.0/2002/phone_numbers", headers=_bearer("tok-c"))).json()
    assert [n["id"] for n in other["data"]] == ["1003"]


async def test_the_listing_is_paged_by_after(client: httpx.AsyncClient) -> None:
    seen: list[str] = []
    params: dict[str, Any] = {"limit": 1}
    for _ in range(5):
        body = (await client.get("/v25.0/2001/phone_numbers", params=params, headers=_bearer("tok-a"))).json()
        seen += [n["id"] for n in body["data"]]
        if "next" not in body["paging"]:
            break
        params = {"limit": 1, "after": body["paging"]["cursors"]["after"]}
    assert seen == ["1001", "1002"]


@pytest.mark.parametrize(("path", "headers", "status", "code"), [
    ("/v25.0/2001/phone_numbers", {}, 401, 190),  # no token
    ("/v25.0/2001/phone_numbers", _bearer("nope"), 401, 190),  # a token nobody has
    ("/v25.0/2001/phone_numbers", _bearer("tok-c"), 403, 200),  # a token of another WABA's number
    ("/v25.0/2002/phone_numbers", _bearer("tok-a"), 403, 200),
    ("/v25.0/2999/phone_numbers", _bearer("tok-a"), 400, 100),  # no such WABA
    ("/latest/2001/phone_numbers", _bearer("tok-a"), 400, 100),
    ("/v25.0/2001/phone_numbers?limit=0", _bearer("tok-a"), 400, 100),
    ("/v25.0/2001/phone_numbers?after=bogus", _bearer("tok-a"), 400, 100),
])
async def test_a_token_without_permission_on_the_waba_is_refused(client: httpx.AsyncClient, path: str,
                                                                 headers: dict[str, str], status: int,
                                                                 code: int) -> None:
    resp = await client.get(path, headers=headers)
    assert (resp.status_code, resp.json()["error"]["code"]) == (status, code), resp.text
