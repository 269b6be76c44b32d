"""A start stops what a killed runner left running on its folder, and nothing else."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

from scrm_stack.stack import Stack, StackConfig


def test_leftover_of_a_killed_runner_is_stopped_and_an_unrelated_pid_is_left_alone(tmp_path: Path) -> None:
    # A process whose command line is the one the runner starts for ingest (`python -m ingest.main`).
    leftover = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)", "-m", "ingest.main"])
    try:
        # Until the child has exec'd, its command line is still ours: a real leftover has long been running.
        cmdline = Path(f"/proc/{leftover.pid}/cmdline")
        deadline = time.monotonic() + 10
        while b"ingest.main" not in cmdline.read_bytes():
            assert time.monotonic() < deadline, "the stand-in leftover never started"
            time.sleep(0.01)
        run = tmp_path / "run"
        run.mkdir()
        (run / "ingest.pid").write_text(f"{leftover.pid}\n")
        (run / "sender.pid").write_text(f"{os.getpid()}\n")  # a reused pid: this test process, not a sender
        (run / "reporting.pid").write_text("999999999\n")  # long gone
        stack = Stack(StackConfig(root=tmp_path, env={}))

        assert stack.stop_leftovers(timeout=10) == [f"ingest (pid {leftover.pid})"]
        assert leftover.wait(timeout=10) == -15  # SIGTERM
        assert list(run.glob("*.pid")) == []
    finally:
        if leftover.poll() is None:
            leftover.kill()
            leftover.wait()
