"""The bootstrap key is the one the environment names now: changing SCRM_BOOTSTRAP_API_KEY retires the old one."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import pytest

from ingest.adapters.db import TenantDirectory, TenantExists
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


@pytest.mark.parametrize("unset", [None, ""])
async def test_a_start_without_a_bootstrap_key_revokes_the_previous_one(directory, caplog, unset) -> None:  # type: ignore[no-untyped-def]
    """Unset means "no bootstrap key wanted": the key the environment used to name stops working, logged."""
    await directory().bootstrap(tenant="demo", api_key="scrm_was_boot", phone_number_id=None)
    admin = await _issued(directory(), "demo", "admin")
    with caplog.at_level(logging.WARNING, logger="ingest.adapters.db"):
        await directory().bootstrap(tenant="demo", api_key=unset, phone_number_id=None)
    assert await directory().principal_for("scrm_was_boot") is None
    assert (await directory().principal_for(admin)).tenant == "demo"  # an ordinary key is none of its business
    assert "SCRM_BOOTSTRAP_API_KEY is not set" in caplog.text
    # Setting one again later works as a first start would.
    await directory().bootstrap(tenant="demo", api_key="scrm_boot_again", phone_number_id=None)
    assert (await directory().principal_for("scrm_boot_again")).role == "admin"


async def test_naming_another_tenants_key_is_refused_and_changes_nothing(directory, caplog) -> None:  # type: ignore[no-untyped-def]
    await directory().bootstrap(tenant="demo", api_key="scrm_demo_boot", phone_number_id=None)
    theirs = await _issued(directory(), "other-shop", "read")
    with caplog.at_level(logging.ERROR, logger="ingest.adapters.db"):
        await directory().bootstrap(tenant="demo", api_key=theirs, phone_number_id=None)
    assert "names a key of tenant other-shop" in caplog.text
    listed = {k.tenant: k for k in await directory().keys("other-shop")}
    assert listed["other-shop"].bootstrap is False  # not made a bootstrap key: no later start retires it
    assert listed["other-shop"].role == "read"
    assert (await directory().principal_for(theirs)).tenant == "other-shop"
    assert (await directory().principal_for("scrm_demo_boot")).tenant == "demo"  # the bootstrap key stays
    # and a later start with a real value of its own still retires only the bootstrap keys
    await directory().bootstrap(tenant="demo", api_key="scrm_demo_next", phone_number_id=None)
    assert await directory().principal_for("scrm_demo_boot") is None
    assert (await directory().principal_for(theirs)).tenant == "other-shop"


async def _issued(directory: TenantDirectory, tenant: str, role: str) -> str:
    """A fresh ordinary key of `role` for `tenant` (made if needed)."""
    try:
        await directory.create_tenant(tenant, name=None)
    except TenantExists:
        pass
    return (await directory.issue_key(tenant, role, label=None)).key  # type: ignore[arg-type]
