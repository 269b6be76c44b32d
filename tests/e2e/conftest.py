"""One full stack (five services and the simulator) shared by the e2e modules that don't kill processes."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support.backend import Backend
from tests.support.stack import TestStack, start_stack


@pytest.fixture(scope="session")
def full_stack(backend: Backend, work_dir: Path) -> Iterator[TestStack]:
    stack = start_stack(work_dir, backend)
    yield stack
    stack.close()
