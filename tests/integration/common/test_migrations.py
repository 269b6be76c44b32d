"""The migrations runner and the schema-confined engine against the real embedded PostgreSQL."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import pytest
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from scrm_common.db import make_engine, migrate

CREATE = "CREATE TABLE widgets (id int PRIMARY KEY, name text NOT NULL);\n"
SEED = "INSERT INTO widgets VALUES (1, 'first');\n"
ALTER = "ALTER TABLE widgets ADD COLUMN colour text;\n"

# A deferred trigger runs when the migration's transaction really commits. It fails that commit if the
# migrations lock is no longer held by the session at that moment.
LOCK_PROBE = """
CREATE TABLE probe (id int);
CREATE FUNCTION probe_lock_held() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
  IF NOT EXISTS (SELECT 1 FROM pg_locks
                 WHERE locktype = 'advisory' AND pid = pg_backend_pid() AND granted) THEN
    RAISE EXCEPTION 'migration committed after the migrations lock was released';
  END IF;
  RETURN NULL;
END $$;
CREATE CONSTRAINT TRIGGER probe_at_commit AFTER INSERT ON probe DEFERRABLE INITIALLY DEFERRED
  FOR EACH ROW EXECUTE FUNCTION probe_lock_held();
INSERT INTO probe VALUES (1);
"""

# A migration whose COMMIT takes a moment (a deferred check, a slow fsync): nothing else is different.
SLOW_COMMIT = """
CREATE TABLE ledger (id int);
CREATE FUNCTION ledger_check() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN PERFORM pg_sleep(1); RETURN NULL; END $$;
CREATE CONSTRAINT TRIGGER ledger_at_commit AFTER INSERT ON ledger DEFERRABLE INITIALLY DEFERRED
  FOR EACH ROW EXECUTE FUNCTION ledger_check();
INSERT INTO ledger VALUES (1);
"""

MIGRATIONS_COMMIT_AFTER_UNLOCK = (
    "libs/common/src/scrm_common/db/migrations.py:28-45: after `conn.commit()` the SELECT of done versions "
    "autobegins a SQLAlchemy transaction, so each `driver.transaction()` is only a SAVEPOINT inside it; every "
    "migration (and its schema_migrations row) commits at the final `conn.commit()`, AFTER pg_advisory_unlock. "
    "Fix: `await conn.commit()` right after reading `done` (or run each file in `async with conn.begin()`)")


@pytest.fixture(scope="module")
def database_url(postgres) -> str:  # type: ignore[no-untyped-def]
    return postgres.new_database()


@pytest.fixture
async def engines(database_url: str) -> AsyncIterator[Callable[[str], AsyncEngine]]:
    made: list[AsyncEngine] = []

    def make(schema: str) -> AsyncEngine:
        engine = make_engine(database_url, schema=schema, pool_size=2)
        made.append(engine)
        return engine

    yield make
    for engine in made:
        await engine.dispose()


def write(directory: Path, files: dict[str, str]) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    for name, sql in files.items():
        (directory / name).write_text(sql)
    return directory


async def scalar(engine: AsyncEngine, sql: str) -> object:
    async with engine.connect() as conn:
        return (await conn.execute(text(sql))).scalar()


async def test_applying_the_same_directory_twice_applies_each_file_once(engines, tmp_path: Path) -> None:
    engine = engines("mig_once")
    directory = write(tmp_path / "m", {"001_create.sql": CREATE, "002_seed.sql": SEED, "README.md": "not SQL"})

    assert await migrate(engine, schema="mig_once", directory=directory) == ["001_create.sql", "002_seed.sql"]
    assert await migrate(engine, schema="mig_once", directory=directory) == []
    write(directory, {"003_alter.sql": ALTER})
    assert await migrate(engine, schema="mig_once", directory=directory) == ["003_alter.sql"]
    assert await migrate(engine, schema="mig_once", directory=directory) == []

    assert await scalar(engine, "SELECT count(*) FROM mig_once.widgets") == 1, "the seed ran once"
    assert await scalar(engine, "SELECT string_agg(version, ',' ORDER BY version) FROM mig_once.schema_migrations") \
        == "001_create.sql,002_seed.sql,003_alter.sql"


async def test_a_failing_migration_is_rolled_back_and_retried_next_time(engines, tmp_path: Path) -> None:
    engine = engines("mig_fail")
    directory = write(tmp_path / "m", {"001_create.sql": CREATE,
                                       "002_broken.sql": "INSERT INTO widgets VALUES (2, 'x');\nSELECT nonsense;\n"})
    with pytest.raises(Exception, match="nonsense"):
        await migrate(engine, schema="mig_fail", directory=directory)
    assert await scalar(engine, "SELECT count(*) FROM mig_fail.widgets") == 0, "the half-run file left nothing"
    write(directory, {"002_broken.sql": SEED})
    assert await migrate(engine, schema="mig_fail", directory=directory) == ["002_broken.sql"]


async def test_concurrent_migrations_on_a_fresh_schema_apply_once(engines, tmp_path: Path) -> None:
    directory = write(tmp_path / "m", {"001_create.sql": CREATE, "002_seed.sql": SEED, "003_alter.sql": ALTER})
    # Separate engines, as separate service replicas would have.
    results = await asyncio.gather(*(migrate(engines("mig_race"), schema="mig_race", directory=directory)
                                     for _ in range(3)))
    assert sorted(results) == [[], [], ["001_create.sql", "002_seed.sql", "003_alter.sql"]]
    assert await scalar(engines("mig_race"), "SELECT count(*) FROM mig_race.widgets") == 1


async def test_each_migration_commits_while_the_lock_is_still_held(engines, tmp_path: Path) -> None:
    directory = write(tmp_path / "m", {"001_probe.sql": LOCK_PROBE})
    assert await migrate(engines("mig_probe"), schema="mig_probe", directory=directory) == ["001_probe.sql"]


async def test_concurrent_migrations_survive_a_slow_commit(engines, tmp_path: Path) -> None:
    # The second runner takes the lock while the first's COMMIT is still running, reads no versions
    # and re-runs 001: it fails on the table the first one is committing.
    directory = write(tmp_path / "m", {"001_ledger.sql": SLOW_COMMIT})
    results = await asyncio.gather(*(migrate(engines("mig_slow"), schema="mig_slow", directory=directory)
                                     for _ in range(2)), return_exceptions=True)
    assert [] in results and ["001_ledger.sql"] in results, results


async def test_make_engine_confines_unqualified_names_to_its_schema(engines, tmp_path: Path) -> None:
    empty = write(tmp_path / "none", {})
    a, b = engines("conf_a"), engines("conf_b")
    assert await migrate(a, schema="conf_a", directory=empty) == []  # creates the schemas
    assert await migrate(b, schema="conf_b", directory=empty) == []

    for engine, name in ((a, "from a"), (b, "from b")):
        async with engine.begin() as conn:
            await conn.execute(text("CREATE TABLE gadgets (name text)"))
            await conn.execute(text("INSERT INTO gadgets VALUES (:n)"), {"n": name})

    async with a.connect() as conn:
        where = (await conn.execute(text(
            "SELECT table_schema FROM information_schema.tables WHERE table_name = 'gadgets' ORDER BY 1"))).scalars()
        assert list(where) == ["conf_a", "conf_b"], "nothing landed in public"
    assert await scalar(a, "SELECT string_agg(name, ',') FROM gadgets") == "from a"
    assert await scalar(b, "SELECT string_agg(name, ',') FROM gadgets") == "from b"

    # Every pooled connection, not just the first, is confined.
    async def search_path() -> str:
        async with a.connect() as conn:
            value = (await conn.execute(text("SHOW search_path"))).scalar()
            await conn.execute(text("SELECT pg_sleep(0.05)"))  # keep it checked out so the pool opens another
            return str(value)

    assert set(await asyncio.gather(*(search_path() for _ in range(4)))) == {"conf_a,public"}


def test_make_engine_refuses_a_schema_name_it_would_have_to_quote() -> None:
    for bad in ("Conf", "conf-a", "conf;drop", "", "1conf"):
        with pytest.raises(ValueError, match="bad schema name"):
            make_engine("postgresql+asyncpg://postgres@/x", schema=bad)
