"""Test stacks: a fresh broker, a fresh database and real service processes per test module."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import httpx
from aiokafka import AIOKafkaConsumer, TopicPartition

from scrm_stack.stack import MODULES, PORT_VARS, SERVICES, Stack, StackConfig, StackError, free_port, port_free
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

    def __init__(self, stack: Stack, *, record_responses: bool = False) -> None:
        self.stack = stack
        self.api_key = stack.secrets["SCRM_BOOTSTRAP_API_KEY"]
        self.app_secret = stack.secrets["SCRM_WHATSAPP_APP_SECRET"]
        self.verify_token = stack.secrets["SCRM_WHATSAPP_VERIFY_TOKEN"]
        # (what, text) of every answer this stack gave the test (its HTTP client and `scrm` runs), when asked
        # to record them: the secrets sweep reads them.
        self.responses: list[tuple[str, str]] = []
        hooks = {"response": [self._record]} if record_responses else {}
        self._recording = record_responses
        self.http = httpx.Client(timeout=10.0, event_hooks=hooks)

    def _record(self, response: httpx.Response) -> None:
        response.read()
        self.responses.append((f"{response.request.method} {response.request.url} → {response.status_code}",
                               response.text))

    def url(self, name: str, path: str) -> str:
        port = self.stack.config.ports.get(name)
        if port is None:  # a replica started with `start_replica`
            port = self.stack.procs[name].port
        return f"http://127.0.0.1:{port}{path}"

    def start_replica(self, name: str, replica: int = 2) -> str:
        """Start one more process of service `name` on its own free port (same database, broker, consumer
        group and secrets), named `<name>-<replica>`: its log is `<name>-<replica>.log`, `url()` and
        `stop_all` know it. Returns the replica's name once it answers /readyz."""
        replica_name = f"{name}-{replica}"
        port = free_port()
        if not port_free(port):
            raise StackError(f"port {port} for {replica_name} is already in use")
        env = self.stack.service_env() | {PORT_VARS[name][0]: str(port)}
        self.stack._spawn(replica_name, [sys.executable, "-m", MODULES[name]], env=env, port=port)  # noqa: SLF001
        self.stack.wait_ready([replica_name], timeout=90)
        return replica_name

    def metrics(self, name: str) -> str:
        """The process's Prometheus exposition (GET /metrics)."""
        resp = self.http.get(self.url(name, "/metrics"))
        resp.raise_for_status()
        return resp.text

    def cli_env(self, *, key: str | None = None, operator: bool = False) -> dict[str, str]:
        """The environment a `scrm` run against this stack gets: every service URL, the tenant `key` as
        SCRM_API_KEY, and the operator token when `operator`."""
        env = {k: v for k, v in os.environ.items() if not k.startswith("SCRM_")}
        for name in (*SERVICES, "simulator"):
            if name in self.stack.config.ports:
                env[f"SCRM_{name.upper().replace('-', '_')}_URL"] = self.url(name, "")
        if key:
            env["SCRM_API_KEY"] = key
        if operator:
            env["SCRM_ADMIN_TOKEN"] = self.stack.secrets["SCRM_ADMIN_TOKEN"]
        env["COLUMNS"] = "250"
        return env

    def scrm(self, *args: str, key: str | None = None, operator: bool = False, env: dict[str, str] | None = None,
             timeout: float = 60) -> subprocess.CompletedProcess[str]:
        """Run the `scrm` CLI of this venv against this stack (stdout/stderr recorded when recording); `env`
        adds variables (e.g. one `--token-env` names)."""
        run = subprocess.run([str(Path(sys.executable).with_name("scrm")), *args], capture_output=True, text=True,
                             env=self.cli_env(key=key, operator=operator) | (env or {}), timeout=timeout,
                             check=False, stdin=subprocess.DEVNULL)
        if self._recording:
            self.responses.append((f"scrm {' '.join(args)} → exit {run.returncode}", run.stdout + run.stderr))
        return run

    def sweep(self, needles: dict[str, str], *, skip_response: Callable[[str], bool] = lambda _: False) -> list[str]:
        """Where any of `needles` (label → secret text) appears: every log file under the stack's root, every
        running process's /metrics, and every recorded response (but those `skip_response(what)` names,
        e.g. the one answer that shows a new key once). Returns "label in place" lines; empty when clean."""
        found: list[str] = []
        places: list[tuple[str, str]] = []
        for path in sorted((self.stack.root / "logs").glob("*")):
            if path.is_file():
                places.append((f"log {path.name}", path.read_text(errors="replace")))
        for name, proc in self.stack.procs.items():
            if proc.port is not None and proc.alive and name != "broker":
                try:
                    places.append((f"{name} /metrics", self.http.get(self.url(name, "/metrics")).text))
                except httpx.HTTPError as exc:
                    found.append(f"{name} /metrics unreadable: {exc}")
        places += [(f"response {what}", text) for what, text in list(self.responses) if not skip_response(what)]
        for label, secret in needles.items():
            for where, text in places:
                if secret and secret in text:
                    line = next(ln for ln in text.splitlines() if secret in ln)
                    found.append(f"{label} in {where}: {line[:300]}")
        return found

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
                env: dict[str, str] | None = None, record_responses: bool = False) -> TestStack:
    """A fresh broker, a fresh database and the named processes on free ports (`record_responses`: the
    returned stack keeps every answer its client got, for `TestStack.sweep`)."""
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
    return TestStack(stack, record_responses=record_responses)


def _base_env() -> dict[str, str]:
    import os

    keep = ("PATH", "HOME", "LANG", "TMPDIR", "XDG_RUNTIME_DIR", "VIRTUAL_ENV")
    return {k: os.environ[k] for k in keep if k in os.environ}
