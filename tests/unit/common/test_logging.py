"""Every log line is one JSON object: ours, uvicorn's, the access log, tracebacks and uncaught exceptions."""

from __future__ import annotations

import io
import json
import logging
import signal
import socket
import subprocess
import sys
import textwrap
import threading
import time
from typing import Any

import httpx
import pytest

from scrm_common.observability.logging import (
    ACCESS_LOGGER,
    CORRELATION_ID,
    JsonFormatter,
    access_log_level,
    setup_logging,
)


def _format(record_fn) -> dict[str, Any]:  # type: ignore[no-untyped-def]
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(JsonFormatter("svc"))
    logger = logging.getLogger("test.logging.format")
    logger.addHandler(handler)
    logger.propagate = False
    try:
        record_fn(logger)
    finally:
        logger.removeHandler(handler)
    lines = stream.getvalue().splitlines()
    assert len(lines) == 1, lines
    return json.loads(lines[0])


def test_a_traceback_is_one_json_line() -> None:
    def log_failure(logger: logging.Logger) -> None:
        try:
            {}["missing"]
        except KeyError:
            logger.exception("lookup failed", extra={"tenant": "t-1"})

    line = _format(log_failure)
    assert (line["level"], line["service"], line["msg"], line["tenant"]) == ("error", "svc", "lookup failed", "t-1")
    assert line["exc"].startswith("Traceback (most recent call last)") and "KeyError: 'missing'" in line["exc"]


def test_a_line_written_while_serving_a_request_carries_its_correlation_id() -> None:
    token = CORRELATION_ID.set("c-42")
    try:
        line = _format(lambda logger: logger.warning("slow"))
    finally:
        CORRELATION_ID.reset(token)
    assert line["correlation_id"] == "c-42"
    assert "correlation_id" not in _format(lambda logger: logger.warning("outside a request"))


@pytest.mark.parametrize(("setting", "level"), [(None, logging.WARNING), ("errors", logging.WARNING),
                                                ("ALL", logging.INFO), (" off ", logging.CRITICAL + 1)])
def test_the_access_log_setting(setting: str | None, level: int) -> None:
    assert access_log_level(setting) == level


def test_an_unknown_access_log_setting_is_refused_by_name() -> None:
    with pytest.raises(ValueError, match="SCRM_ACCESS_LOG must be one of all, errors, off"):
        access_log_level("verbose")


def test_uncaught_exceptions_of_the_process_and_its_threads_are_json(monkeypatch: pytest.MonkeyPatch) -> None:
    stream = io.StringIO()
    monkeypatch.setattr(sys, "stderr", stream)
    root = logging.getLogger()
    saved = (root.handlers[:], root.level, sys.excepthook, threading.excepthook)
    try:
        setup_logging("svc", "INFO", access_log="off")
        try:
            raise RuntimeError("boom at start")
        except RuntimeError as exc:
            sys.excepthook(type(exc), exc, exc.__traceback__)
        thread = threading.Thread(target=lambda: 1 / 0, name="worker-1")
        thread.start()
        thread.join()
    finally:
        root.handlers[:], level, sys.excepthook, threading.excepthook = saved
        root.setLevel(level)
        logging.captureWarnings(False)
    lines = [json.loads(line) for line in stream.getvalue().splitlines()]
    assert [(line["level"], line["msg"]) for line in lines] == [
        ("critical", "uncaught RuntimeError: boom at start"),
        ("critical", "uncaught ZeroDivisionError in thread worker-1: division by zero")]
    assert all("Traceback" in line["exc"] for line in lines)


SERVER = textwrap.dedent("""
    import asyncio, sys
    from scrm_common.http import service_app
    from scrm_common.observability.logging import setup_logging
    from scrm_common.runtime import serve

    setup_logging("probe", "INFO")
    app = service_app("probe", "0")

    @app.get("/ok")
    async def ok() -> dict[str, int]:
        return {"ok": 1}

    @app.get("/boom")
    async def boom() -> None:
        raise RuntimeError("boom")

    asyncio.run(serve(app=app, port=int(sys.argv[1]), loops=[]))
""")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_a_running_service_writes_nothing_but_json_lines() -> None:
    """uvicorn's own lines (a malformed request), the access log and a 500's traceback — all JSON."""
    port = _free_port()
    proc = subprocess.Popen([sys.executable, "-c", SERVER, str(port)], stderr=subprocess.PIPE, text=True,
                            env={"SCRM_ACCESS_LOG": "all", "PATH": "/usr/bin:/bin"})
    try:
        url = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 30
        while True:
            try:
                assert httpx.get(url + "/ok").status_code == 200
                break
            except httpx.TransportError:
                assert proc.poll() is None and time.monotonic() < deadline, "the probe server did not start"
                time.sleep(0.05)
        failed = httpx.get(url + "/boom")
        with socket.create_connection(("127.0.0.1", port)) as raw:
            raw.sendall(b"NOT HTTP AT ALL\r\n\r\n")
            raw.recv(1024)
    finally:
        proc.send_signal(signal.SIGTERM)
        _, stderr = proc.communicate(timeout=20)
    lines = [json.loads(line) for line in stderr.splitlines()]  # fails on any line that is not JSON
    assert failed.status_code == 500
    correlation_id = failed.json()["error"]["correlation_id"]
    errors = [line for line in lines if line["logger"] == "scrm_common.http"]
    assert len(errors) == 1 and errors[0]["correlation_id"] == correlation_id and "RuntimeError: boom" in errors[0]["exc"]
    access = [(line["method"], line["path"], line["status"]) for line in lines if line["logger"] == ACCESS_LOGGER]
    assert ("GET", "/ok", 200) in access and ("GET", "/boom", 500) in access
    assert any(line["logger"].startswith("uvicorn") for line in lines), lines
    assert {line["service"] for line in lines} == {"probe"}
