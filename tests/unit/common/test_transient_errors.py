"""Which failures the consume loop retries forever (infrastructure, deadlocks) and which it counts."""

from __future__ import annotations

import pytest
from sqlalchemy.exc import DBAPIError, OperationalError

from scrm_common.kafka.consumer import is_transient


class _PgError(Exception):
    def __init__(self, sqlstate: str) -> None:
        super().__init__(sqlstate)
        self.sqlstate = sqlstate


@pytest.mark.parametrize(("exc", "transient"), [
    (ConnectionResetError("reset"), True),
    (TimeoutError("slow"), True),
    (OperationalError("SELECT 1", {}, Exception("server closed the connection")), True),
    (DBAPIError("UPDATE", {}, _PgError("40P01")), True),  # deadlock detected
    (DBAPIError("UPDATE", {}, _PgError("40001")), True),  # serialization failure
    (DBAPIError("INSERT", {}, _PgError("23505")), False),  # unique violation: a bug, not weather
    (ValueError("bad record"), False),
])
def test_only_failures_that_retrying_heals_are_transient(exc: BaseException, transient: bool) -> None:
    assert is_transient(exc) is transient
