"""Optional py-spy sampling of the stack's processes during a load window, summarised by hot frames."""

from __future__ import annotations

import shutil
import signal
import subprocess
import sys
from collections import Counter
from pathlib import Path

from scrm_stack.stack import Stack


def py_spy() -> str | None:
    """The py-spy binary next to this interpreter, or on PATH."""
    local = Path(sys.executable).with_name("py-spy")
    return str(local) if local.exists() else shutil.which("py-spy")


def start(stack: Stack, names: list[str], directory: Path, seconds: float, rate: int = 100) -> list[subprocess.Popen]:
    """Start `py-spy record` (raw collapsed stacks) on each named process for `seconds`."""
    binary = py_spy()
    if binary is None:
        return []
    directory.mkdir(parents=True, exist_ok=True)
    spies = []
    for name in names:
        proc = stack.procs.get(name)
        if proc is None or not proc.alive:
            continue
        spies.append(subprocess.Popen(
            [binary, "record", "--pid", str(proc.popen.pid), "--duration", str(max(1, int(seconds))), "--rate",
             str(rate), "--format", "raw", "--nonblocking", "--output", str(directory / f"{name}.txt")],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))
    return spies


def wait(spies: list[subprocess.Popen], timeout: float = 60.0, *, interrupt: bool = False) -> None:
    """Wait for the samplers to write their output (with `interrupt`, stop them now: py-spy saves on SIGINT)."""
    for spy in spies:
        if interrupt and spy.poll() is None:
            spy.send_signal(signal.SIGINT)
    for spy in spies:
        try:
            spy.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            spy.kill()
            spy.wait()


def hot_frames(collapsed: str, *, top: int = 8, idle: tuple[str, ...] = ("select (selectors.py",)) -> dict[str, object]:
    """From collapsed stacks (`a;b;c 12`): the busiest own frames and inclusive frames outside asyncio's core."""
    own: Counter[str] = Counter()
    incl: Counter[str] = Counter()
    total = busy = 0
    for line in collapsed.splitlines():
        stack, _, count = line.rstrip().rpartition(" ")
        if not stack or not count.isdigit():
            continue
        n = int(count)
        total += n
        frames = stack.split(";")
        if any(marker in frames[-1] for marker in idle):
            continue
        busy += n
        own[frames[-1]] += n
        for frame in set(frames):
            incl[frame] += n
    boring = ("asyncio/", "<frozen runpy>", "runpy.py", "/main.py", "run (", "Handle._run", "_run_once")
    inclusive = [(f, n) for f, n in incl.most_common() if not any(b in f for b in boring)]
    return {
        "samples": total,
        "busy_share": round(busy / total, 3) if total else 0.0,
        "own": [(f, round(n / busy, 3)) for f, n in own.most_common(top)] if busy else [],
        "inclusive": [(f, round(n / busy, 3)) for f, n in inclusive[:top]] if busy else [],
    }


def summarise(directory: Path, names: list[str], top: int = 8) -> dict[str, dict[str, object]]:
    out = {}
    for name in names:
        path = directory / f"{name}.txt"
        if path.exists():
            out[name] = hot_frames(path.read_text(errors="replace"), top=top)
    return out
