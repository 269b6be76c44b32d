"""Migrations runner: numbered SQL files applied once each, under an advisory lock, per schema."""

from __future__ import annotations

import logging
import zlib
from pathlib import Path

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

log = logging.getLogger(__name__)


async def migrate(engine: AsyncEngine, *, schema: str, directory: Path) -> list[str]:
    """Apply every `NNN_*.sql` in `directory` not yet applied to `schema`; return those applied."""
    files = sorted(p for p in directory.glob("*.sql"))
    applied_now: list[str] = []
    lock_id = zlib.crc32(f"scrm-migrate:{schema}".encode())
    async with engine.connect() as conn:
        await conn.execute(text("SELECT pg_advisory_lock(:id)"), {"id": lock_id})
        try:
            await conn.execute(text(f'CREATE SCHEMA IF NOT EXISTS "{schema}"'))
            await conn.execute(text(
                f'CREATE TABLE IF NOT EXISTS "{schema}".schema_migrations '
                "(version text PRIMARY KEY, applied_at timestamptz NOT NULL DEFAULT now())"))
            await conn.commit()
            done = set((await conn.execute(
                text(f'SELECT version FROM "{schema}".schema_migrations'))).scalars())
            # End the read's implicit transaction, so each migration below commits on its own,
            # while the advisory lock is still held (not at the final commit, after the unlock).
            await conn.commit()
            for path in files:
                if path.name in done:
                    continue
                raw = await conn.get_raw_connection()
                driver = raw.driver_connection
                assert driver is not None
                async with driver.transaction():
                    await driver.execute(f'SET LOCAL search_path TO "{schema}", public')
                    await driver.execute(path.read_text())
                    await driver.execute(
                        f'INSERT INTO "{schema}".schema_migrations(version) VALUES ($1)', path.name)
                applied_now.append(path.name)
                log.info("applied migration %s/%s", schema, path.name)
        finally:
            await conn.execute(text("SELECT pg_advisory_unlock(:id)"), {"id": lock_id})
            await conn.commit()
    return applied_now
