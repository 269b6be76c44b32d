"""Supervision rules of the runner, pure: when a dead process is restarted, when the runner gives up, and
how a death and a restart are told. No processes, no clock: times are arguments (seconds, monotonic or wall).
"""

from __future__ import annotations

import json
import signal
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

# Environment variables of the restart policy (documented in the banner's help and the README).
ENV_MAX_RESTARTS = "SCRM_RESTART_MAX"  # restarts of one process allowed within the window
ENV_WINDOW = "SCRM_RESTART_WINDOW_SECONDS"
ENV_BACKOFF = "SCRM_RESTART_BACKOFF_SECONDS"  # first delay, doubled after each restart within the window
ENV_BACKOFF_MAX = "SCRM_RESTART_BACKOFF_MAX_SECONDS"


@dataclass(frozen=True, slots=True)
class RestartPolicy:
    """Restart a dead process after `base_seconds`, doubling up to `max_seconds` for each restart it already
    had within the last `window_seconds`; after `max_restarts` restarts within the window, give up."""

    base_seconds: float = 0.5
    max_seconds: float = 8.0
    max_restarts: int = 5
    window_seconds: float = 120.0

    @classmethod
    def from_env(cls, env: Mapping[str, str]) -> RestartPolicy:
        """The policy from `SCRM_RESTART_*` variables; ValueError naming the variable when one is malformed."""
        def number(var: str, default: float, *, minimum: float) -> float:
            raw = env.get(var)
            if raw is None or raw.strip() == "":
                return default
            try:
                value = float(raw)
            except ValueError:
                raise ValueError(f"{var}={raw!r} is not a number") from None
            if value < minimum:
                raise ValueError(f"{var}={raw!r} must be at least {minimum:g}")
            return value

        d = cls()
        base = number(ENV_BACKOFF, d.base_seconds, minimum=0.0)
        return cls(
            base_seconds=base,
            max_seconds=max(base, number(ENV_BACKOFF_MAX, d.max_seconds, minimum=0.0)),
            max_restarts=int(number(ENV_MAX_RESTARTS, d.max_restarts, minimum=0)),
            window_seconds=number(ENV_WINDOW, d.window_seconds, minimum=1.0),
        )

    def recent(self, restarts: Sequence[float], now: float) -> int:
        """How many of the restart times fall within the window ending at `now`."""
        return sum(1 for at in restarts if now - at < self.window_seconds)

    def delay(self, restarts: Sequence[float], now: float) -> float | None:
        """Seconds to wait before restarting a process that died at `now`, having been restarted at the
        times `restarts`; None when it already had `max_restarts` restarts within the window (give up)."""
        n = self.recent(restarts, now)
        if n >= self.max_restarts:
            return None
        return min(self.max_seconds, self.base_seconds * (2 ** n))

    def describe(self) -> str:
        """The policy in words, for the banner."""
        return (f"restart after {self.base_seconds:g} s doubling to {self.max_seconds:g} s, "
                f"at most {self.max_restarts} restarts in {self.window_seconds:g} s")


def exit_text(code: int | None) -> str:
    """An exit status in words: `exit code 1`, `killed by SIGKILL (-9)`."""
    if code is None:
        return "still running"
    if code < 0:
        try:
            return f"killed by {signal.Signals(-code).name} ({code})"
        except ValueError:
            return f"killed by signal {-code} ({code})"
    return f"exit code {code}"


def clock(at: float | None) -> str:
    """A wall-clock time as HH:MM:SS in local time, `-` when unknown."""
    return "-" if at is None else time.strftime("%H:%M:%S", time.localtime(at))


def readable_line(line: str, width: int = 220) -> str:
    """A log line made short for the terminal: a JSON line as `time level logger: msg — last line of exc`."""
    text = line.rstrip()
    if text.startswith("{"):
        try:
            rec = json.loads(text)
        except ValueError:
            rec = None
        if isinstance(rec, dict) and "msg" in rec:
            text = " ".join(str(rec[k]) for k in ("ts", "level") if k in rec)
            text += f" {rec.get('logger', '')}: {str(rec['msg']).strip()}"
            exc = str(rec.get("exc") or "").strip()
            if exc:
                text += " — " + exc.splitlines()[-1]
    return text if len(text) <= width else text[: width - 1] + "…"


def log_tail(text: str, lines: int = 8, width: int = 220) -> str:
    """The last `lines` non-empty lines of a log, each made readable (`readable_line`) within `width`."""
    kept = [line for line in text.splitlines() if line.strip()][-lines:]
    return "\n".join(readable_line(line, width) for line in kept)


@dataclass
class ProcessState:
    """What the runner knows about one supervised process (times are wall-clock seconds)."""

    name: str
    state: str = "starting"  # starting | ready | dead | restarting | stopped | gave up
    pid: int | None = None
    restarts: list[float] = field(default_factory=list)  # monotonic times of restarts, for the policy
    restart_count: int = 0
    last_exit: int | None = None
    died_at: float | None = None
    restarted_at: float | None = None
    restart_due: float | None = None  # monotonic time the next restart is due
    log_tail: str = ""

    def death_line(self, log_path: str) -> str:
        """One paragraph telling that this process died, how, and its last log lines."""
        tail = "\n".join("    " + line for line in self.log_tail.splitlines()) or "    (its log is empty)"
        return (f"{self.name} died at {clock(self.died_at)}, {exit_text(self.last_exit)}; "
                f"last lines of {log_path}:\n{tail}")

    def restart_line(self, policy: RestartPolicy, recent: int) -> str:
        """One line telling that this process was restarted, and how many restarts the window still allows."""
        return (f"{self.name} restarted at {clock(self.restarted_at)} (pid {self.pid}; restart {recent} of at most "
                f"{policy.max_restarts} in {policy.window_seconds:g} s)")

    def status(self) -> str:
        """The short state the status line and the live view show, e.g. `ready`, `ready (2 restarts)`."""
        text = self.state
        if self.restart_count:
            text += f" ({self.restart_count} restart{'s' if self.restart_count != 1 else ''}"
            if self.last_exit is not None:
                text += f", last {exit_text(self.last_exit)} at {clock(self.died_at)}"
            text += ")"
        return text


def gave_up_line(name: str, policy: RestartPolicy) -> str:
    """Why the runner stops: a process kept dying (the runner then drains what the others can and exits 1)."""
    return (f"{name} died {policy.max_restarts + 1} times within {policy.window_seconds:g} s "
            f"({policy.max_restarts} restarts allowed, {ENV_MAX_RESTARTS} / {ENV_WINDOW}); "
            f"giving up: draining what the other processes can, then stopping everything — "
            f"fix the cause shown in its log and run again")


BROKER_DEATH = (
    "the embedded Kafka broker (Tansu) died, {how}. It keeps records in memory only, so records it held "
    "that no consumer had processed yet are gone: events accepted by ingest but not yet applied, and "
    "send commands not yet taken by the sender (what services had already written to PostgreSQL is kept). "
    "The embedded stack cannot recover them; it stops now. For a durable broker run Apache Kafka: "
    "`docker compose up` (docker-compose.yml) or the Helm chart in deploy/helm, "
    "or point SCRM_KAFKA_BOOTSTRAP at your Kafka."
)
