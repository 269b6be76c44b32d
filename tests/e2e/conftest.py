"""One full stack (five services and the simulator) shared by the e2e modules that don't kill processes."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support.stack import TestStack, start_stack


@pytest.fixture(scope="session")
def full_stack(postgres, work_dir: Path) -> Iterator[TestStack]:  # type: ignore[no-untyped-def]
    import os
    procs = tuple(os.environ.get("SCRM_TEST_PROCESSES", "ingest,trigger-engine,sender,segmenter,reporting,simulator").split(","))
    stack = start_stack(work_dir, postgres.new_database(), processes=procs)
    yield stack
    stack.close()
