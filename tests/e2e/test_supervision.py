"""`make run`'s runner loses nothing it accepted: services killed with -9 are restarted by the runner, and a
Ctrl-C drains before it stops, so the next run continues where the last one stopped.

The runner runs for real, as a subprocess (`python -m scrm_stack.cli run --plain --root <tmp>`), with its own
broker and embedded PostgreSQL. The WhatsApp simulator is started by the test, outside the runner, so what it
received survives the runner's restarts: it is where every order confirmation is counted.
"""

from __future__ import annotations

import os
import secrets
import signal
import subprocess
import sys
import threading
import uuid
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from scrm_stack.stack import PORT_VARS, free_port
from tests.support.events import new_phone, payment
from tests.support.stack import TEST_ENV, _base_env, poll

ORDERS = 300
CLIENTS = 4
VICTIMS = ("sender", "trigger-engine", "ingest", "segmenter", "reporting")


class Runner:
    """One `scrm_stack.cli run --plain` process on a stack root; its output goes to a file under the root."""

    def __init__(self, root: Path, env: dict[str, str]) -> None:
        self.root = root
        self.env = env
        self.runs = 0
        self.popen: subprocess.Popen[bytes] | None = None
        self.out_path = root / "runner-0.out"

    def start(self) -> None:
        self.runs += 1
        self.out_path = self.root / f"runner-{self.runs}.out"
        with open(self.out_path, "wb") as out:
            self.popen = subprocess.Popen(
                [sys.executable, "-m", "scrm_stack.cli", "run", "--plain", "--root", str(self.root)],
                env=self.env, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
        poll(self._started, timeout=120, what=f"the runner to be ready; its output:\n{self.output}")

    def _started(self) -> bool:
        assert self.popen is not None
        if self.popen.poll() is not None:
            raise AssertionError(f"the runner exited with {self.popen.returncode}:\n{self.output}")
        return "scrm: supervision:" in self.output  # the banner's last line

    @property
    def output(self) -> str:
        try:
            return self.out_path.read_text(errors="replace")
        except OSError:
            return ""

    def pid(self, name: str) -> int | None:
        try:
            return int((self.root / "run" / f"{name}.pid").read_text())
        except (OSError, ValueError):
            return None

    def interrupt(self, timeout: float = 90) -> int:
        """Ctrl-C, then wait for the runner to exit; its exit code."""
        assert self.popen is not None
        self.popen.send_signal(signal.SIGINT)
        return self.popen.wait(timeout=timeout)

    def close(self) -> None:
        if self.popen is None or self.popen.poll() is not None:
            return
        self.popen.send_signal(signal.SIGINT)
        try:
            self.popen.wait(timeout=45)
            return
        except subprocess.TimeoutExpired:
            self.popen.send_signal(signal.SIGINT)  # a second Ctrl-C: stop at once
        try:
            self.popen.wait(timeout=30)
        except subprocess.TimeoutExpired:  # a hung runner must not leave its children behind
            self.popen.kill()
            for path in (self.root / "run").glob("*.pid"):
                try:
                    os.kill(int(path.read_text()), signal.SIGKILL)
                except (OSError, ValueError):
                    pass
            raise


class Harness:
    """The runner, the external simulator and a client posting payments the way a shop would."""

    def __init__(self, root: Path) -> None:
        self.ports = {name: free_port() for name in PORT_VARS}
        self.app_secret = secrets.token_hex(16)
        self.api_key = "scrm_" + secrets.token_urlsafe(24)
        sim_url = f"http://127.0.0.1:{self.ports['simulator']}"
        common = {**_base_env(), **TEST_ENV, "SCRM_WHATSAPP_APP_SECRET": self.app_secret}
        sim_env = {**common, "SCRM_SIMULATOR_PORT": str(self.ports["simulator"]),
                   "SCRM_SIMULATOR_WEBHOOK_URL": f"{self.url('ingest')}/v1/webhooks/whatsapp"}
        root.mkdir(parents=True, exist_ok=True)
        self.sim_log = open(root / "simulator-external.log", "wb")  # noqa: SIM115 - closed in close()
        self.sim = subprocess.Popen([sys.executable, "-m", "whatsapp_sim.main"], env=sim_env, stdout=self.sim_log,
                                    stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
        runner_env = {**common, "SCRM_DEMO": "0", "SCRM_WHATSAPP_BASE_URL": sim_url,
                      "SCRM_BOOTSTRAP_API_KEY": self.api_key, "SCRM_BROKER_PORT": str(free_port())}
        runner_env.update({var: str(self.ports[name]) for name, (var, _) in PORT_VARS.items()})
        self.runner = Runner(root, runner_env)
        self.http = httpx.Client(timeout=5.0)
        self.accepted: list[str] = []  # orders answered 202

    def url(self, name: str) -> str:
        return f"http://127.0.0.1:{self.ports[name]}"

    def post_until_accepted(self, order: str, *, timeout: float = 120, client: httpx.Client | None = None) -> None:
        """POST one payment; on a connection error or 503 retry the same event, as a shop's client would."""
        event = payment(order_id=order, phone=new_phone())
        headers = {"Authorization": f"Bearer {self.api_key}"}
        http = client or self.http

        def attempt() -> bool:
            try:
                resp = http.post(f"{self.url('ingest')}/v1/events", json=event, headers=headers)
            except httpx.TransportError:
                return False
            if resp.status_code == 202:
                return True
            assert resp.status_code == 503, f"{order}: {resp.status_code} {resp.text[:300]}"
            assert resp.headers.get("Retry-After"), "a 503 while draining says when to retry"
            return False

        poll(attempt, timeout=timeout, what=f"payment {order} to be accepted", interval=0.05)
        self.accepted.append(order)

    def confirmations(self) -> Counter[str]:
        resp = self.http.get(f"{self.url('simulator')}/_sim/messages")
        resp.raise_for_status()
        return Counter(m["template"]["parameters"][0] for m in resp.json()["messages"]
                       if m.get("template") and m["template"]["name"] == "order_confirmation")

    def assert_each_accepted_confirmed_once(self) -> None:
        def all_confirmed() -> Counter[str] | None:
            seen = self.confirmations()
            return seen if set(self.accepted) <= set(seen) else None

        poll(all_confirmed, timeout=90, what=f"all {len(self.accepted)} accepted orders confirmed", interval=0.5)
        # Nothing is left that could still go out a second time: every message of the send log is sent.
        def settled() -> bool:
            resp = self.http.get(f"{self.url('sender')}/v1/messages", params={"limit": 1000},
                                 headers={"Authorization": f"Bearer {self.api_key}"})
            rows = resp.json()["messages"] if resp.status_code == 200 else []
            return len(rows) >= len(self.accepted) and all(r["state"] == "sent" for r in rows)

        poll(settled, timeout=60, what="the send log to settle", interval=0.5)
        seen = self.confirmations()
        lost = sorted(set(self.accepted) - set(seen))
        twice = {order: n for order, n in seen.items() if n > 1}
        assert lost == [], f"{len(lost)} accepted orders never confirmed, e.g. {lost[:10]}"
        assert twice == {}, f"confirmed more than once: {twice}"
        assert set(seen) == set(self.accepted), "a confirmation for an order that was never accepted"

    def close(self) -> None:
        self.http.close()
        self.runner.close()
        self.sim.send_signal(signal.SIGTERM)
        try:
            self.sim.wait(timeout=15)
        except subprocess.TimeoutExpired:
            self.sim.kill()
            self.sim.wait(timeout=10)
        self.sim_log.close()


@pytest.fixture
def harness(work_dir: Path) -> Iterator[Harness]:
    h = Harness(work_dir / f"supervision-{uuid.uuid4().hex[:8]}")
    try:
        h.runner.start()
        yield h
    finally:
        h.close()


def test_kill_9_of_each_service_in_turn_loses_and_duplicates_no_accepted_order_then_broker_death_stops_all(
        harness: Harness) -> None:
    orders = [f"SV{uuid.uuid4().hex[:6].upper()}{i:03d}" for i in range(ORDERS)]
    kill_at = {ORDERS * (n + 1) // (len(VICTIMS) + 1): victim for n, victim in enumerate(VICTIMS)}
    killed: dict[str, int] = {}
    for i, order in enumerate(orders):
        victim = kill_at.get(i)
        if victim is not None:  # between two requests: none is in flight at ingest
            pid = harness.runner.pid(victim)
            assert pid is not None, f"no pid file for {victim}"
            os.kill(pid, signal.SIGKILL)
            killed[victim] = pid
            poll(lambda v=victim, p=pid: harness.runner.pid(v) not in (None, p), timeout=30,
                 what=f"the runner to restart {victim}; its output:\n{harness.runner.output[-3000:]}")
        harness.post_until_accepted(order)
    assert len(harness.accepted) == ORDERS

    harness.assert_each_accepted_confirmed_once()

    out = harness.runner.output
    for victim in VICTIMS:
        assert f"scrm: {victim} died at" in out and "killed by SIGKILL" in out, out[-3000:]
        assert f"scrm: {victim} restarted at" in out, out[-3000:]
    assert harness.runner.popen is not None and harness.runner.popen.poll() is None, "the runner kept running"

    # The one death the embedded stack cannot survive: the memory-only broker. The runner says so and exits 2.
    broker = harness.runner.pid("broker")
    assert broker is not None
    os.kill(broker, signal.SIGKILL)
    assert harness.runner.popen.wait(timeout=60) == 2, harness.runner.output[-3000:]
    out = harness.runner.output
    assert "the embedded Kafka broker (Tansu) died, killed by SIGKILL" in out, out[-3000:]
    assert "memory only" in out and "docker compose" in out


def test_ctrl_c_mid_stream_drains_and_the_next_run_confirms_every_accepted_order(harness: Harness) -> None:
    orders = [f"CC{uuid.uuid4().hex[:6].upper()}{i:03d}" for i in range(ORDERS)]
    failures: list[BaseException] = []

    def post_all(mine: list[str]) -> None:
        try:
            with httpx.Client(timeout=5.0) as client:
                for order in mine:
                    harness.post_until_accepted(order, timeout=150, client=client)
        except BaseException as exc:  # reported by the test thread
            failures.append(exc)

    # Four clients at once: requests are in flight at ingest when the Ctrl-C lands.
    posters = [threading.Thread(target=post_all, args=(orders[n::CLIENTS],), daemon=True) for n in range(CLIENTS)]
    for poster in posters:
        poster.start()
    poll(lambda: len(harness.accepted) >= ORDERS // 3, timeout=60, what="a third of the payments accepted")

    code = harness.runner.interrupt()
    first_run = harness.runner.output
    assert code == 0, first_run[-3000:]
    assert "scrm: intake closed" in first_run and "scrm: drained in" in first_run, first_run[-3000:]
    assert "outbox relays and the sender's dispatcher pause" in first_run, first_run[-3000:]
    assert first_run.index("scrm: stopping ingest") < first_run.index("scrm: drained in"), first_run[-3000:]
    accepted_before = len(harness.accepted)
    assert accepted_before < ORDERS, "the stop came mid-stream"

    harness.runner.start()  # same root: PostgreSQL kept its state, the broker starts empty
    for poster in posters:
        poster.join(timeout=150)
    assert not any(p.is_alive() for p in posters) and failures == []
    assert len(harness.accepted) == ORDERS

    harness.assert_each_accepted_confirmed_once()
    assert harness.runner.interrupt() == 0, harness.runner.output[-3000:]

