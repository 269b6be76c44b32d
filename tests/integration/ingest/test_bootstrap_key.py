"""The bootstrap key is the one the environment names now: changing SCRM_BOOTSTRAP_API_KEY retires the old one."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from ingest.adapters.db import TenantDirectory
from scrm_common.db import make_engine, migrate

MIGRATIONS = Path(__file__).resolve().parents[3] / "services/ingest/src/ingest/migrations"


@pytest.fixture
def database_url(postgres: Any) -> str:
    return postgres.new_database()


@pytest.fixture
async def directory(database_url: str):  # type: ignore[no-untyped-def]
    engine = make_engine(database_url, schema="ingest", pool_size=2)
    await migrate(engine, schema="ingest", directory=MIGRATIONS)
    try:
        yield lambda: TenantDirectory(engine, cache_seconds=0)  # a fresh directory: no cached answer
    finally:
        await engine.dispose()


async def test_a_new_bootstrap_key_revokes_the_previous_one(directory, caplog) -> None:  # type: ignore[no-untyped-def]
    await directory().bootstrap(tenant="demo", api_key="scrm_old", phone_number_id=None)
    assert (await directory().principal_for("scrm_old")).tenant == "demo"

    await directory().bootstrap(tenant="demo", api_key="scrm_new", phone_number_id=None)
    assert await directory().principal_for("scrm_old") is None
    assert (await directory().principal_for("scrm_new")).tenant == "demo"

    # Starting again with the same value changes nothing; a revoked key named again stays revoked.
    await directory().bootstrap(tenant="demo", api_key="scrm_new", phone_number_id=None)
    assert (await directory().principal_for("scrm_new")).tenant == "demo"
    await directory().bootstrap(tenant="demo", api_key="scrm_old", phone_number_id=None)
    assert await directory().principal_for("scrm_old") is None
    assert await directory().principal_for("scrm_new") is None
    assert "names a key that was revoked" in caplog.text


async def test_another_bootstrap_tenant_retires_the_first_tenants_bootstrap_key(directory) -> None:  # type: ignore[no-untyped-def]
    await directory().bootstrap(tenant="demo", api_key="scrm_demo", phone_number_id=None)
    await directory().bootstrap(tenant="shop2", api_key="scrm_shop2", phone_number_id=None)
    assert await directory().principal_for("scrm_demo") is None
    assert (await directory().principal_for("scrm_shop2")).tenant == "shop2"


async def test_a_start_without_a_bootstrap_key_revokes_nothing(directory) -> None:  # type: ignore[no-untyped-def]
    await directory().bootstrap(tenant="demo", api_key="scrm_kept", phone_number_id=None)
    await directory().bootstrap(tenant="demo", api_key=None, phone_number_id=None)
    assert (await directory().principal_for("scrm_kept")).tenant == "demo"
