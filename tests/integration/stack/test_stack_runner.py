"""The embedded stack runner's operator-facing failures, with real processes."""

from __future__ import annotations

import os
import socket
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from sqlalchemy.engine import make_url

from scrm_stack.stack import Stack, StackConfig, StackError, free_port, port_free
from tests.support.stack import poll


def base_env(**extra: str) -> dict[str, str]:
    keep = ("PATH", "HOME", "LANG", "TMPDIR", "VIRTUAL_ENV")
    return {**{k: os.environ[k] for k in keep if k in os.environ}, "SCRM_ENV": "test", "SCRM_LOG_LEVEL": "INFO",
            **extra}


@pytest.fixture
def new_stack(tmp_path: Path) -> Iterator[Callable[..., Stack]]:
    """Stacks on free ports under tmp_path; each is stopped at the end, and nothing it started survives."""
    made: list[Stack] = []

    def make(**env: str) -> Stack:
        config = StackConfig.from_env(tmp_path / f"stack-{len(made)}", env=base_env(**env))
        config.broker_port = free_port()
        config.ports = {name: free_port() for name in config.ports}
        stack = Stack(config)
        made.append(stack)
        return stack

    yield make
    for stack in made:
        stack.stop_all()
        assert [p.name for p in stack.procs.values() if p.popen.poll() is None] == []


@pytest.fixture
def occupied(request: pytest.FixtureRequest) -> Iterator[int]:
    """A port some other program is listening on (on the host given by the test's parameter)."""
    host = getattr(request, "param", "127.0.0.1")
    with socket.socket() as sock:
        sock.bind((host, 0))
        sock.listen()
        yield int(sock.getsockname()[1])


@pytest.mark.parametrize("occupied", ["127.0.0.1", "0.0.0.0"], indirect=True)
def test_a_service_port_in_use_is_named_with_its_variable(new_stack, occupied: int) -> None:
    stack = new_stack()
    stack.config.ports["ingest"] = occupied
    with pytest.raises(StackError) as error:
        stack.start("ingest")
    assert str(occupied) in str(error.value)
    assert "SCRM_INGEST_PORT" in str(error.value)
    assert stack.procs == {}, "nothing was started"


def test_the_broker_port_in_use_is_named_with_its_variable(new_stack, occupied: int) -> None:
    stack = new_stack()
    stack.config.broker_port = occupied
    with pytest.raises(StackError) as error:
        stack.start_broker()
    assert str(occupied) in str(error.value)
    assert "SCRM_BROKER_PORT" in str(error.value)
    assert stack.procs == {}


def test_a_process_dying_at_start_is_named_with_its_log_tail(new_stack, postgres) -> None:  # type: ignore[no-untyped-def]
    missing = "no_such_db_for_ingest"
    # The URL of a database that exists on the test server, renamed to one that does not.
    url = make_url(postgres.new_database()).set(database=missing).render_as_string(hide_password=False)
    stack = new_stack(SCRM_DATABASE_URL=url)
    stack.start("ingest")
    started = time.monotonic()
    with pytest.raises(StackError) as error:
        stack.wait_ready(["ingest"], timeout=60)
    message = str(error.value)
    assert time.monotonic() - started < 55, "a dead process is reported at once, not at the timeout"
    assert message.startswith("ingest exited with code ")
    assert stack.procs["ingest"].popen.returncode not in (None, 0)
    assert str(stack.procs["ingest"].log_path) in message
    assert f'database "{missing}" does not exist' in message, message


def test_a_process_not_ready_in_time_is_named(new_stack, postgres) -> None:  # type: ignore[no-untyped-def]
    # ingest waits (up to 30 s) for a broker that nobody runs: alive, never ready.
    stack = new_stack(SCRM_DATABASE_URL=postgres.new_database(), SCRM_KAFKA_BOOTSTRAP=f"127.0.0.1:{free_port()}")
    stack.start("ingest")
    with pytest.raises(StackError, match=r"not ready after 2s: ingest"):
        stack.wait_ready(["ingest"], timeout=2)
    assert stack.procs["ingest"].alive
    stack.stop_all()
    assert stack.procs["ingest"].popen.poll() is not None


def test_stop_all_leaves_no_child_process_alive(new_stack, postgres) -> None:  # type: ignore[no-untyped-def]
    stack = new_stack(SCRM_DATABASE_URL=postgres.new_database(), SCRM_TOPIC_PARTITIONS="2")
    stack.start_broker()
    stack.start("ingest")
    stack.wait_ready(["ingest"], timeout=90)
    procs = list(stack.procs.values())
    assert [p.name for p in procs] == ["broker", "ingest"]
    assert all(p.alive for p in procs)

    stack.stop_all()

    assert [(p.name, p.popen.poll()) for p in procs if p.popen.poll() is None] == []
    for port in (stack.config.broker_port, stack.config.ports["ingest"]):
        poll(lambda port=port: port_free(port), timeout=10, what=f"port {port} to be released")
    stack.stop_all()  # a second stop is harmless
