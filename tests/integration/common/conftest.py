"""A real Tansu broker per test module (memory storage, free port), stopped at the module's end."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.integration.common.kafka_support import start_broker


@pytest.fixture(scope="module")
def broker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """The bootstrap address of this module's own broker."""
    stack = start_broker(tmp_path_factory.mktemp("broker"))
    try:
        yield stack.kafka_bootstrap
    finally:
        stack.stop_all()
        assert all(proc.popen.poll() is not None for proc in stack.procs.values())
