"""Starts ingest: migrations, bootstrap tenant, producer, the account-routing and short-link consumers, HTTP."""

from __future__ import annotations

import asyncio
from pathlib import Path

from ingest.adapters.accounts import accounts_consumer, run_until_drained
from ingest.adapters.admin_http import build_admin_router
from ingest.adapters.auth import TenantKeys
from ingest.adapters.db import TenantDirectory
from ingest.adapters.http import IngestMetrics, app_body_limit, build_router
from ingest.adapters.kafka import EventPublisher
from ingest.adapters.links import LinkStore, links_consumer
from ingest.adapters.links_http import LinkMetrics, build_links_router
from ingest.config import Settings
from scrm_common import runtime
from scrm_common.clock import SystemClock
from scrm_common.http import ops_router, service_app
from scrm_common.observability.logging import setup_logging
from scrm_common.observability.metrics import new_registry
from scrm_common.runtime import serve
from scrm_common.service import infrastructure

MIGRATIONS = Path(__file__).parent / "migrations"
SCHEMA = "ingest"


async def main(settings: Settings) -> None:
    setup_logging("ingest", settings.log_level)
    async with infrastructure(settings, service="ingest", schema=SCHEMA, migrations=MIGRATIONS) as infra:
        engine, producer = infra.engine, infra.producer
        directory = TenantDirectory(engine, cache_seconds=settings.key_cache_seconds)
        await directory.bootstrap(tenant=settings.bootstrap_tenant, api_key=settings.bootstrap_api_key,
                                  phone_number_id=settings.bootstrap_phone_number_id,
                                  waba_id=settings.bootstrap_waba_id)
        registry = new_registry()
        metrics = IngestMetrics(registry)
        keys = TenantKeys(directory, on_refused=lambda status: metrics.rejected.labels(str(status)).inc())
        accounts = accounts_consumer(settings, producer=producer, directory=directory, registry=registry)
        store = LinkStore(engine)
        links = links_consumer(settings, producer=producer, store=store, registry=registry)

        async def ready() -> bool:
            return accounts.ready and links.ready and await directory.ping()

        app = service_app("scrm ingest", "0.1.0", description="Events in (`POST /v1/events`), Meta's webhooks, "
                          "the installation's tenants and API keys, and the public short links (`/l/…`, `/r/…`)",
                          max_body_bytes=app_body_limit(settings),
                          on_body_too_large=lambda: metrics.rejected.labels("413").inc())
        app.include_router(build_router(settings=settings, directory=directory,
                                        publisher=EventPublisher(producer), clock=SystemClock(),
                                        metrics=metrics, keys=keys))
        app.include_router(build_admin_router(admin_token=settings.admin_token, directory=directory, keys=keys))
        app.include_router(build_links_router(store=store, publisher=EventPublisher(producer), clock=SystemClock(),
                                              metrics=LinkMetrics(registry), secret=settings.link_secret,
                                              rules=settings.link_rules,
                                              publish_timeout_seconds=settings.link_publish_timeout_seconds))
        app.include_router(ops_router(registry, ready))

        async def routing(stop: asyncio.Event) -> None:
            await run_until_drained(accounts, stop)

        async def short_links(stop: asyncio.Event) -> None:
            # The same drain as the account loop's (it uses nothing of the record type).
            await run_until_drained(links, stop)  # type: ignore[arg-type]

        await serve(app=app, port=settings.ingest_port, loops=[routing, short_links])


def run() -> None:
    runtime.run(main(Settings()))


if __name__ == "__main__":
    run()
