"""The whole story over the real route and a real PostgreSQL, the engine's decisions written by the real event
handler: with the sender down (a closed port: nothing answers) the decisions are still told, newest first,
the story oldest first, each sent message `unknown`, and `send_log: unavailable` — never a 500. (What the
sender's log adds is tested purely in tests/unit/trigger_engine/test_story*.py and end to end over the stack.)"""

from __future__ import annotations

import socket
import uuid
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
from sqlalchemy.ext.asyncio import AsyncEngine

from scrm_common.db import make_engine, migrate
from scrm_common.http import service_app
from tests.integration.trigger_engine.test_dead_letter_story import Keys, create
from tests.unit.trigger_engine.factories import PHONE, contact_created, payment
from trigger_engine.adapters.db import EngineRepository
from trigger_engine.adapters.http import build_router
from trigger_engine.adapters.send_log import SendLog
from trigger_engine.main import MIGRATIONS, SCHEMA


@pytest.fixture(scope="module")
def database_url(postgres: Any) -> str:
    return str(postgres.new_database())


@pytest.fixture(scope="module")
async def engine(database_url: str) -> AsyncIterator[AsyncEngine]:
    made = make_engine(database_url, schema=SCHEMA, pool_size=4)
    await migrate(engine=made, schema=SCHEMA, directory=MIGRATIONS)
    yield made
    await made.dispose()


def closed_port() -> int:
    """A local port nothing listens on (bound, then released)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


async def test_a_sender_that_is_down_leaves_the_story_of_decisions_and_says_so(engine: AsyncEngine) -> None:
    tenant = f"t{uuid.uuid4().hex[:10]}"
    await create(engine, tenant, contact_created(external_id="cust-s1", phone=PHONE))
    await create(engine, tenant, payment(order_id="ord-s1", external_id="cust-s1", phone=PHONE))
    send_log = SendLog(f"http://127.0.0.1:{closed_port()}")
    app = service_app("trigger-engine under test", "0")
    app.include_router(build_router(engine=engine, repository=EngineRepository(), keys=Keys(),  # type: ignore[arg-type]
                                    send_log=send_log))
    try:
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://te") as http:
            resp = await http.get("/v1/contacts/cust-s1/decisions", headers={"Authorization": f"Bearer {tenant}"})
    finally:
        await send_log.aclose()
    assert resp.status_code == 200, resp.text
    body = resp.json()
    sends = [d for d in body["decisions"] if d["outcome"] == "send"]
    assert {d["flow"] for d in sends} >= {"order_confirmation"}, body["decisions"]
    assert body["decisions"][0]["flow"] == "order_confirmation"  # newest first, as before
    assert body["send_log"] == "unavailable"
    decided = [line for line in body["story"] if line["step"] == "decided"]
    assert [line["idempotency_key"] for line in decided] == [d["idempotency_key"] for d in reversed(sends)]
    assert {m["idempotency_key"]: m["status"] for m in body["messages"] if m["idempotency_key"] in
            {d["idempotency_key"] for d in sends}} == {d["idempotency_key"]: "unknown" for d in sends}
