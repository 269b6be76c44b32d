"""Test stacks: a fresh broker, a fresh database and real service processes per test module."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import httpx
from aiokafka import AIOKafkaConsumer, TopicPartition

from scrm_stack.stack import SERVICES, Stack, StackConfig, free_port
from tests.support.backend import Backend

T = TypeVar("T")

# Faster, deterministic simulator and sender settings for tests (the defaults stay realistic).
TEST_ENV = {
    "SCRM_ENV": "test",
    "SCRM_LOG_LEVEL": "INFO",
    "SCRM_SIMULATOR_P_FAIL": "0",
    "SCRM_SIMULATOR_P_REPLY": "0",
    "SCRM_SIMULATOR_P_DELIVERED": "1",
    "SCRM_SIMULATOR_P_READ": "0.5",
    "SCRM_SIMULATOR_STATUS_DELAY_MS": "10..50",
    "SCRM_SIMULATOR_SEED": "7",
    "SCRM_DOUBT_TIMEOUT_SECONDS": "5",
    "SCRM_RETRY_BASE_SECONDS": "0.05",
    "SCRM_RETRY_MAX_SECONDS": "1",
}


def poll(fn: Callable[[], T | None], *, timeout: float, what: str, interval: float = 0.1) -> T:
    """Call `fn` until it returns something truthy, or fail after `timeout` seconds naming `what`."""
    deadline = time.monotonic() + timeout
    last: Any = None
    while time.monotonic() < deadline:
        last = fn()
        if last:
            return last
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout}s waiting for {what}; last value: {last!r}")


class TestStack:
    """A running set of processes with helpers to talk to them."""

    __test__ = False

    def __init__(self, stack: Stack) -> None:
        self.stack = stack
        self.api_key = stack.secrets["SCRM_BOOTSTRAP_API_KEY"]
        self.app_secret = stack.secrets["SCRM_WHATSAPP_APP_SECRET"]
        self.verify_token = stack.secrets["SCRM_WHATSAPP_VERIFY_TOKEN"]
        self.http = httpx.Client(timeout=10.0)

    def url(self, name: str, path: str) -> str:
        return f"http://127.0.0.1:{self.stack.config.ports[name]}{path}"

    @property
    def auth(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.api_key}"}

    def post_events(self, body: Any, *, key: str | None = None, headers: dict[str, str] | None = None,
                    **kw: Any) -> httpx.Response:
        sent = {"Authorization": f"Bearer {key or self.api_key}", **(headers or {})}
        return self.http.post(self.url("ingest", "/v1/events"), json=body, headers=sent, **kw)

    def sim_messages(self, **params: Any) -> list[dict[str, Any]]:
        resp = self.http.get(self.url("simulator", "/_sim/messages"), params=params)
        resp.raise_for_status()
        body = resp.json()
        return body["messages"] if isinstance(body, dict) else body

    def restart(self, name: str) -> None:
        self.stack.start(name)
        self.stack.wait_ready([name], timeout=60)

    def topic_size(self, topic: str) -> int:
        return asyncio.run(_topic_size(self.stack.kafka_bootstrap, topic))

    def close(self) -> None:
        self.http.close()
        self.stack.stop_all()


async def _topic_size(bootstrap: str, topic: str) -> int:
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap)
    await consumer.start()
    try:
        partitions = consumer.partitions_for_topic(topic) or set()
        if not partitions:
            await consumer._client.force_metadata_update()  # noqa: SLF001 - fresh topic metadata
            partitions = consumer.partitions_for_topic(topic) or set()
        ends = await consumer.end_offsets([TopicPartition(topic, p) for p in partitions])
        return sum(ends.values())
    finally:
        await consumer.stop()


def start_stack(root: Path, backend: Backend, *, processes: tuple[str, ...] = (*SERVICES, "simulator"),
                env: dict[str, str] | None = None) -> TestStack:
    """A fresh broker, a fresh database and the named processes on free ports."""
    config_env = {**_base_env(), **TEST_ENV, "SCRM_DATABASE_URL": backend.new_database(), **(env or {})}
    kafka = backend.new_kafka()
    if kafka:
        config_env["SCRM_KAFKA_BOOTSTRAP"] = kafka
    config = StackConfig.from_env(root / uuid.uuid4().hex[:8], env=config_env)
    config.broker_port = free_port()
    config.ports = {name: free_port() for name in config.ports}
    stack = Stack(config)
    try:
        stack.load_secrets()
        stack.start_broker()
        stack.create_topics()
        for name in processes:
            stack.start(name)
        stack.wait_ready(list(processes), timeout=90)
    except BaseException:
        stack.stop_all()
        raise
    return TestStack(stack)


def _base_env() -> dict[str, str]:
    import os

    keep = ("PATH", "HOME", "LANG", "TMPDIR", "XDG_RUNTIME_DIR", "VIRTUAL_ENV")
    return {k: os.environ[k] for k in keep if k in os.environ}
