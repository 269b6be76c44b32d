"""The order of the graceful stop, with fake processes and scripted looks at the broker: phase 1 closes
ingest's intake, phase 2 pauses every service and waits for ingest (and the simulator) to exit before the looks
that decide; a process the runner gave up on is drained around, named, and the exit is 1."""

from __future__ import annotations

import signal
from collections.abc import Iterator
from pathlib import Path

import pytest

import scrm_stack.cli as cli
from scrm_stack.drain import Observation
from scrm_stack.stack import SERVICES, Proc
from scrm_stack.supervise import RestartPolicy

ENDS = {("scrm.events.v1", 0): 7}


class FakePopen:
    """A process that exits at once on SIGTERM or SIGKILL and records every signal it gets."""

    def __init__(self, name: str, pid: int, signals: list[tuple[str, int]]) -> None:
        self.name, self.pid, self.returncode = name, pid, None
        self._signals = signals

    def poll(self) -> int | None:
        return self.returncode

    def send_signal(self, sig: int) -> None:
        self._signals.append((self.name, sig))
        if sig in (signal.SIGTERM, signal.SIGKILL):
            self.returncode = -sig

    def kill(self) -> None:
        self.send_signal(signal.SIGKILL)


@pytest.fixture
def runner(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[cli.Runner]:
    monkeypatch.delenv("SCRM_WHATSAPP_BASE_URL", raising=False)
    monkeypatch.setenv(cli.ENV_DRAIN_TIMEOUT, "30")
    r = cli.Runner(tmp_path, demo=False, plain=True)
    r.sent = []  # type: ignore[attr-defined]
    r.lines = []  # type: ignore[attr-defined]
    r.say = r.lines.append  # type: ignore[attr-defined]
    for pid, name in enumerate(["broker", *r.supervised], start=100):
        r.stack.procs[name] = Proc(name, FakePopen(name, pid, r.sent), tmp_path / f"{name}.log",  # type: ignore[arg-type, attr-defined]
                                   None if name == "broker" else 8000 + pid)
        if name in r.states:
            r.states[name].state, r.states[name].pid = "ready", pid
    r.stack.database_url = ""
    monkeypatch.setattr(r.stack, "pg_alive", lambda: True)
    monkeypatch.setattr(r, "_wait", lambda seconds, signals: None)
    monkeypatch.setattr(cli, "DRAIN_SETTLE_SECONDS", 0.0)
    yield r
    r.http.close()


def script_looks(monkeypatch: pytest.MonkeyPatch, runner: cli.Runner, lag: dict[tuple[str, str], int],
                 outbox: dict[str, int]) -> list[set[str]]:
    """Every look answers `lag`/`outbox`; returns, per look, the processes alive at that moment."""
    alive_at: list[set[str]] = []

    async def observe(bootstrap: str, dsn: str | None) -> Observation:
        alive_at.append({n for n, p in runner.stack.procs.items() if p.alive})
        return Observation(lag=lag, outbox=outbox, ends=ENDS)

    monkeypatch.setattr(cli, "observe", observe)
    return alive_at


def test_ctrl_c_closes_ingest_then_pauses_the_rest_and_decides_only_after_ingest_exited(
        runner: cli.Runner, monkeypatch: pytest.MonkeyPatch) -> None:
    alive_at = script_looks(monkeypatch, runner, {("sender", "scrm.send-commands.v1"): 0}, {"sender": 0})
    assert runner.graceful_stop() == cli.EXIT_OK
    sent: list[tuple[str, int]] = runner.sent  # type: ignore[attr-defined]
    assert sent[0] == ("ingest", signal.SIGUSR1), "phase 1 closes ingest's intake first"
    paused = [n for n, s in sent[1:] if s == signal.SIGUSR1]
    assert sorted(paused) == sorted(n for n in SERVICES if n != "ingest"), "phase 2 pauses every other service"
    stopped = [n for n, s in sent if s == signal.SIGTERM]
    assert sorted(stopped) == ["ingest", "simulator"]
    assert sent.index(("ingest", signal.SIGTERM)) > max(sent.index((n, signal.SIGUSR1)) for n in paused)
    # Phase 1 looked twice with ingest up; phase 2 looked twice after ingest and the simulator had exited.
    assert len(alive_at) == 4
    assert all("ingest" in a for a in alive_at[:2]) and all("ingest" not in a for a in alive_at[2:])
    assert all("simulator" not in a and "sender" in a for a in alive_at[2:])
    assert runner.lines[-1].startswith("drained in"), runner.lines  # type: ignore[attr-defined]


def test_phase_2_leaves_outbox_rows_in_postgres_when_phase_1_ran_out_of_time(
        runner: cli.Runner, monkeypatch: pytest.MonkeyPatch) -> None:
    script_looks(monkeypatch, runner, {("sender", "scrm.send-commands.v1"): 0}, {"trigger_engine": 3})
    # Phase 2 keeps the whole timeout: phase 1 times out at its first look; phase 2 still drains the groups.
    monkeypatch.setattr(cli, "PHASE_2_SHARE", 1.0)
    monkeypatch.setattr(cli, "PHASE_2_MAX_SECONDS", runner.drain_timeout)
    assert runner.graceful_stop() == cli.EXIT_OK
    lines = "\n".join(runner.lines)  # type: ignore[attr-defined]
    assert "drain phase 1 ran out of its time" in lines
    assert "3 outbox rows stay in PostgreSQL and go out at the next start" in lines


def test_a_group_that_never_catches_up_times_phase_2_out_with_exit_1(
        runner: cli.Runner, monkeypatch: pytest.MonkeyPatch) -> None:
    script_looks(monkeypatch, runner, {("segmenter", "scrm.events.v1"): 4}, {})
    runner.drain_timeout = 0.0
    assert runner.graceful_stop() == cli.EXIT_FAILED
    assert "segmenter has 4 records of scrm.events.v1 to apply" in runner.lines[-1]  # type: ignore[attr-defined]


def test_giving_up_on_a_service_drains_the_others_names_its_groups_and_exits_1(
        runner: cli.Runner, monkeypatch: pytest.MonkeyPatch) -> None:
    runner.policy = RestartPolicy(max_restarts=0)
    alive_at = script_looks(monkeypatch, runner, {("trigger-engine", "scrm.events.v1"): 9,
                                                  ("segmenter", "scrm.events.v1"): 0}, {"trigger_engine": 2})
    runner.stack.procs["trigger-engine"].popen.returncode = -9  # type: ignore[misc]
    assert runner.tick() == cli.EXIT_FAILED
    assert runner.gone == ["trigger-engine"]
    assert runner.graceful_stop() == cli.EXIT_FAILED
    lines = "\n".join(runner.lines)  # type: ignore[attr-defined]
    assert "trigger-engine, trigger-engine-dead-letters, trigger-engine-outcomes cannot drain" in lines
    assert ("not drained, their service gone: trigger-engine, trigger-engine-dead-letters, trigger-engine-outcomes "
            "(9 records not applied") in runner.lines[-1]  # type: ignore[attr-defined]
    assert ("trigger-engine", signal.SIGUSR1) not in runner.sent  # type: ignore[attr-defined]
    assert len(alive_at) == 4 and "ingest" not in alive_at[-1]
