"""Session fixtures: one PostgreSQL server for the whole run (a database per test stack) and the
Kafka source — testcontainers when a Docker engine is reachable, else the embedded stack."""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support.backend import Backend, choose_backend

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="session")
def work_dir() -> Iterator[Path]:
    path = ROOT / ".scrm" / f"test-{os.getpid()}"
    path.mkdir(parents=True, exist_ok=True)
    yield path
    shutil.rmtree(path, ignore_errors=True)


@pytest.fixture(scope="session")
def backend(work_dir: Path) -> Iterator[Backend]:
    chosen = choose_backend(work_dir)
    yield chosen
    chosen.close()


@pytest.fixture(scope="session")
def postgres(backend: Backend) -> Backend:
    """A server on which `new_database()` gives a fresh, empty database."""
    return backend


def pytest_report_header() -> str:
    return f"scrm test backend: {os.environ.get('SCRM_TEST_BACKEND', 'auto')} (containers when a Docker engine answers)"
