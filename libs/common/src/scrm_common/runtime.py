"""Running a service: its loops and its HTTP server together, stopping all on SIGTERM/SIGINT.

SIGUSR1 closes the service's intake (`INTAKE`) without stopping it: ingest then answers `POST /v1/events`
with 503 + `Retry-After`, outbox relays and the sender's dispatcher pause (what they hold stays in
PostgreSQL), while everything already on the broker drains (the runner's graceful stop; a Kubernetes
`preStop` hook can do the same with `kill -USR1 1`). SIGUSR2 opens it again.
"""

from __future__ import annotations

import asyncio
import logging
import os
import signal
from collections.abc import Awaitable, Callable, Coroutine, Sequence
from typing import Any

import uvicorn
from fastapi import FastAPI

log = logging.getLogger(__name__)

Loop = Callable[[asyncio.Event], Awaitable[None]]

# Where services listen unless told: loopback, so the embedded stack is not reachable from the network.
# Containers set `SCRM_BIND_HOST=0.0.0.0` (docker-compose.yml, the Helm chart).
DEFAULT_BIND_HOST = "127.0.0.1"


class Intake:
    """Whether this process takes new work from outside (open) or is draining for a stop (closed)."""

    def __init__(self) -> None:
        self.closed_at: float | None = None  # loop.time() of the close, None while open

    @property
    def open(self) -> bool:
        return self.closed_at is None

    def close(self) -> None:
        if self.closed_at is None:
            self.closed_at = asyncio.get_running_loop().time()
            log.warning("intake closed: no new work taken (ingest answers 503; outbox relays and the sender's "
                        "dispatcher pause) while accepted work drains")

    def reopen(self) -> None:
        if self.closed_at is not None:
            self.closed_at = None
            log.warning("intake open again")


INTAKE = Intake()


def bind_host(default: str | None = None) -> str:
    """The address to listen on: `SCRM_BIND_HOST`, else `default`, else loopback (`DEFAULT_BIND_HOST`)."""
    return os.environ.get("SCRM_BIND_HOST") or default or DEFAULT_BIND_HOST


async def serve(*, app: FastAPI, port: int, loops: Sequence[Loop], host: str | None = None) -> None:
    """Serve `app` and run `loops` until SIGTERM/SIGINT arrives or one loop fails (then exit non-zero).

    Listens on `host`, else `bind_host()`. SIGUSR1/SIGUSR2 close/reopen `INTAKE`.
    """
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    loop.add_signal_handler(signal.SIGUSR1, INTAKE.close)
    loop.add_signal_handler(signal.SIGUSR2, INTAKE.reopen)
    host = host or bind_host()
    # log_config=None: uvicorn's loggers keep the JSON handler `setup_logging` installed (no text lines);
    # the access log is `scrm_common.http.RequestContext`'s (JSON, `SCRM_ACCESS_LOG`), not uvicorn's.
    config = uvicorn.Config(app, host=host, port=port, log_config=None, log_level="warning", access_log=False,
                            lifespan="off", loop="none", http="auto")
    server = uvicorn.Server(config)
    server.install_signal_handlers = lambda: None  # type: ignore[method-assign]
    tasks = [asyncio.create_task(fn(stop), name=getattr(fn, "__name__", "loop")) for fn in loops]
    http_task = asyncio.create_task(server.serve(), name="http")
    stopper = asyncio.create_task(stop.wait(), name="stop")
    done, _ = await asyncio.wait([*tasks, http_task, stopper], return_when=asyncio.FIRST_COMPLETED)
    failure: BaseException | None = None
    for task in done:
        if task is not stopper and not task.cancelled() and task.exception() is not None:
            failure = task.exception()
            log.error("%s failed: %r", task.get_name(), failure, exc_info=failure)
    stop.set()
    server.should_exit = True
    await asyncio.wait([*tasks, http_task], timeout=10)
    for task in [*tasks, http_task]:
        task.cancel()
    if failure is not None:
        raise SystemExit(1)


def run(main: Coroutine[Any, Any, None]) -> None:
    """Run a service's main coroutine on uvloop when available (faster I/O), else on asyncio."""
    try:
        import uvloop
    except ImportError:
        asyncio.run(main)
        return
    uvloop.run(main)
