"""Ingest against the real PostgreSQL: a migrated database per module, the app as `ingest.main` wires it
(the broker replaced by a recorder of what would be published), and a real Tansu broker where a module asks."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

import httpx
import pytest
from fastapi import FastAPI
from prometheus_client import CollectorRegistry
from sqlalchemy.ext.asyncio import AsyncEngine

from ingest.adapters.admin_http import build_admin_router
from ingest.adapters.auth import TenantKeys
from ingest.adapters.db import TenantDirectory
from ingest.adapters.http import IngestMetrics, app_body_limit, build_router
from ingest.adapters.kafka import EventPublisher
from ingest.config import Settings
from ingest.main import MIGRATIONS, SCHEMA
from scrm_common.clock import SystemClock
from scrm_common.db import make_engine, migrate
from scrm_common.http import ops_router, service_app
from tests.integration.common.kafka_support import start_broker

OPERATOR_TOKEN = "op-token-for-tests"
INTERNAL_TOKEN = "internal-token-for-tests"
APP_SECRET = "app-secret-for-tests"


@dataclass
class Recorder:
    """The broker as the publisher sees it: every record sent, with its headers."""

    sent: list[tuple[str, bytes, bytes, list[tuple[str, bytes]]]] = field(default_factory=list)

    async def send(self, topic: str, *, key: bytes, value: bytes, headers: Sequence[Any]) -> Any:
        self.sent.append((topic, key, value, list(headers)))

        async def done() -> None:
            return None

        return done()

    def tenants(self) -> list[str]:
        return [dict(h)["tenant"].decode() for _, _, _, h in self.sent]


@dataclass
class Ingest:
    """A running ingest app: its HTTP client, directory, recorder and metrics registry."""

    client: httpx.AsyncClient
    directory: TenantDirectory
    recorder: Recorder
    registry: CollectorRegistry
    settings: Settings

    def metric(self, name: str, **labels: str) -> float:
        return sum(s.value for family in self.registry.collect() for s in family.samples
                   if s.name == name and labels.items() <= s.labels.items())


def build_app(settings: Settings, directory: TenantDirectory, recorder: Recorder,
              registry: CollectorRegistry) -> FastAPI:
    """The app as `ingest.main` builds it (without the consume loop)."""
    metrics = IngestMetrics(registry)
    keys = TenantKeys(directory, on_refused=lambda status: metrics.rejected.labels(str(status)).inc())
    app = service_app("scrm ingest", "0.1.0", max_body_bytes=app_body_limit(settings),
                      on_body_too_large=lambda: metrics.rejected.labels("413").inc())
    app.include_router(build_router(settings=settings, directory=directory,
                                    publisher=EventPublisher(recorder),  # type: ignore[arg-type]
                                    clock=SystemClock(), metrics=metrics, keys=keys))
    app.include_router(build_admin_router(admin_token=settings.admin_token, directory=directory, keys=keys))
    app.include_router(ops_router(registry, directory.ping))
    return app


@pytest.fixture(scope="module")
def database_url(postgres: Any) -> str:
    return postgres.new_database()


@pytest.fixture(scope="module")
async def engine(database_url: str) -> AsyncIterator[AsyncEngine]:
    engine = make_engine(database_url, schema=SCHEMA, pool_size=4)
    await migrate(engine, schema=SCHEMA, directory=MIGRATIONS)
    yield engine
    await engine.dispose()


@pytest.fixture
async def ingest(engine: AsyncEngine) -> AsyncIterator[Ingest]:
    """Ingest with a 30 s key cache (the longest allowed): whatever it refuses at once, it refuses because it
    dropped its own cache entry, not because the entry expired."""
    settings = Settings(admin_token=OPERATOR_TOKEN, internal_token=INTERNAL_TOKEN, whatsapp_app_secret=APP_SECRET,
                        key_cache_seconds=30)
    directory = TenantDirectory(engine, cache_seconds=settings.key_cache_seconds)
    recorder, registry = Recorder(), CollectorRegistry()
    app = build_app(settings, directory, recorder, registry)
    transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
    async with httpx.AsyncClient(transport=transport, base_url="http://ingest") as client:
        yield Ingest(client, directory, recorder, registry, settings)


@pytest.fixture(scope="module")
def broker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A Tansu broker of this module's own (memory storage, free port)."""
    stack = start_broker(tmp_path_factory.mktemp("broker"))
    try:
        yield stack.kafka_bootstrap
    finally:
        stack.stop_all()
