"""A throw-away embedded stack for one benchmark: fresh broker, fresh database, free ports, all cleaned up."""

from __future__ import annotations

import os
import shutil
import time
import uuid
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path

import httpx

from scrm_stack.stack import Stack, StackConfig, free_port, port_free

# Only these are inherited from the caller: a benchmark never runs against someone's own Kafka or database.
_KEEP = ("PATH", "HOME", "LANG", "TMPDIR", "XDG_RUNTIME_DIR", "VIRTUAL_ENV")


def bench_root(base: Path | None = None) -> Path:
    """`.scrm/bench-<time>-<id>` under the repository (or the working directory)."""
    here = (base or Path.cwd()).resolve()
    top = next((p for p in (here, *here.parents) if (p / "pyproject.toml").exists() and (p / "tools").is_dir()), here)
    root = top / ".scrm" / f"bench-{time.strftime('%Y%m%d-%H%M%S')}-{uuid.uuid4().hex[:6]}"
    root.mkdir(parents=True, exist_ok=True)
    return root


@contextmanager
def bench_stack(root: Path, *, postgres: bool, env: Mapping[str, str] | None = None,
                partitions: int = 12) -> Iterator[Stack]:
    """A started broker (and PostgreSQL with a fresh database) on free ports; everything stopped afterwards."""
    base = {k: os.environ[k] for k in _KEEP if k in os.environ}
    config_env = {**base, "SCRM_ENV": "dev", "SCRM_LOG_LEVEL": "WARNING", "SCRM_TOPIC_PARTITIONS": str(partitions),
                  **(env or {})}
    config = StackConfig.from_env(root, env=config_env)
    config.broker_port = free_port()
    config.ports = {name: free_port() for name in config.ports}
    config.database = f"bench_{uuid.uuid4().hex[:8]}"
    stack = Stack(config)
    try:
        stack.load_secrets()
        stack.start_broker()
        if postgres:
            stack.start_postgres()
        stack.create_topics()
        yield stack
    finally:
        stack.stop_all()
        shutil.rmtree(root / "pg", ignore_errors=True)


def start_processes(stack: Stack, names: list[str], *, timeout: float = 120.0) -> None:
    """Start `names` and wait until ready; ports taken meanwhile (an ephemeral client port) are re-picked first."""
    for name in stack.config.ports:
        if name not in stack.procs and not port_free(stack.config.ports[name]):
            stack.config.ports[name] = free_port()
    for name in names:
        stack.start(name)
    stack.wait_ready(names, timeout=timeout)


def scrape(port: int, path: str = "/metrics", timeout: float = 5.0) -> str:
    """GET a local endpoint's text ('' when it does not answer)."""
    try:
        return httpx.get(f"http://127.0.0.1:{port}{path}", timeout=timeout).text
    except httpx.HTTPError:
        return ""


# ---------- CPU accounting from /proc (Linux) ----------

_TICK = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100
MACHINE = "whole machine"
OTHERS = "other processes (not this benchmark)"


def cpu_seconds(pid: int, *, reaped_children: bool = False) -> float | None:
    """User + system CPU seconds a process has used so far (None when it is gone or /proc is missing).

    With `reaped_children`, CPU of children it has already waited for counts too (exited PostgreSQL backends).
    """
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except (OSError, IndexError):
        return None
    ticks = int(fields[11]) + int(fields[12])
    if reaped_children:
        ticks += int(fields[13]) + int(fields[14])
    return ticks / _TICK


def children_of(ppid: int) -> list[int]:
    """Direct children of a process."""
    out = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
        except (OSError, IndexError):
            continue
        if int(fields[1]) == ppid:
            out.append(int(entry.name))
    return out


def postgres_pids(stack: Stack) -> list[int]:
    """The embedded postmaster and its backends."""
    pidfile = stack.root / "pg" / "postmaster.pid"
    try:
        master = int(pidfile.read_text().splitlines()[0])
    except (OSError, ValueError, IndexError):
        return []
    return [master, *children_of(master)]


def machine_cpu_seconds() -> float | None:
    """CPU seconds the whole machine has been busy (all cores; /proc/stat minus idle and iowait)."""
    try:
        fields = [int(v) for v in Path("/proc/stat").read_text().splitlines()[0].split()[1:]]
    except (OSError, ValueError, IndexError):
        return None
    idle = fields[3] + (fields[4] if len(fields) > 4 else 0)
    return (sum(fields[:8]) - idle) / _TICK


def cpu_snapshot(stack: Stack) -> dict[str, float]:
    """CPU seconds so far per stack process, PostgreSQL (all backends) and this benchmark process."""
    out: dict[str, float] = {}
    for name, proc in stack.procs.items():
        value = cpu_seconds(proc.popen.pid)
        if value is not None:
            out[name] = value
    pids = postgres_pids(stack)
    pg = [v for v in (cpu_seconds(p, reaped_children=i == 0) for i, p in enumerate(pids)) if v is not None]
    if pg:
        out["postgres"] = sum(pg)
    times = os.times()
    out["bench (this process)"] = times.user + times.system
    machine = machine_cpu_seconds()
    if machine is not None:
        out[MACHINE] = machine
    return out


def cpu_delta(before: dict[str, float], after: dict[str, float], seconds: float) -> dict[str, dict[str, float]]:
    """CPU seconds used per process between two snapshots, and in cores; what else ran on the machine too."""
    used = {name: max(0.0, value - before.get(name, 0.0)) for name, value in after.items()}
    if MACHINE in used:
        ours = sum(v for k, v in used.items() if k != MACHINE)
        used[OTHERS] = max(0.0, used[MACHINE] - ours)
    out = {name: {"cpu_seconds": round(v, 2), "cores": round(v / seconds, 2) if seconds > 0 else 0.0}
           for name, v in used.items()}
    return dict(sorted(out.items(), key=lambda kv: (kv[0] in (MACHINE, OTHERS), -kv[1]["cpu_seconds"])))
