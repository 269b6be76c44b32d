"""Running a service: its loops and its HTTP server together, stopping all on SIGTERM/SIGINT."""

from __future__ import annotations

import asyncio
import logging
import signal
from collections.abc import Awaitable, Callable, Coroutine, Sequence
from typing import Any

import uvicorn
from fastapi import FastAPI

log = logging.getLogger(__name__)

Loop = Callable[[asyncio.Event], Awaitable[None]]


async def serve(*, app: FastAPI, port: int, loops: Sequence[Loop], host: str = "0.0.0.0") -> None:
    """Serve `app` and run `loops` until a signal arrives or one loop fails (then exit non-zero)."""
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    config = uvicorn.Config(app, host=host, port=port, log_level="warning", access_log=False,
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
