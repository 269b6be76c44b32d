"""`scrm-stack run`: the embedded stack with the five services, the simulator and the demo shop, shown live."""

from __future__ import annotations

import argparse
import os
import signal
import sys
import time
from pathlib import Path

import httpx

from scrm_stack.live import Snapshot, summary, take_snapshot
from scrm_stack.stack import SERVICES, Stack, StackConfig, StackError


def _print(text: str) -> None:
    sys.stdout.write(text + "\n")
    sys.stdout.flush()


def run(root: Path, *, demo: bool, plain: bool) -> int:
    config = StackConfig.from_env(root)
    stack = Stack(config)
    stopping = {"now": False}

    def _stop(*_: object) -> None:
        stopping["now"] = True

    signal.signal(signal.SIGTERM, _stop)
    signal.signal(signal.SIGINT, _stop)
    try:
        secrets = stack.load_secrets()
        _print("scrm: starting the embedded stack under " + str(root))
        stack.start_broker()
        stack.start_postgres()
        stack.create_topics()
        use_simulator = not config.env.get("SCRM_WHATSAPP_BASE_URL")
        for name in SERVICES:
            stack.start(name)
        if use_simulator:
            stack.start("simulator")
        stack.wait_ready([*SERVICES, *(["simulator"] if use_simulator else [])], timeout=90)
        if demo:
            stack.start("demo-shop")
        tenant = config.env.get("SCRM_BOOTSTRAP_TENANT", "demo")
        _print(f"scrm: ready. tenant={tenant} api key={secrets['SCRM_BOOTSTRAP_API_KEY']}")
        _print(f"scrm: webhook app secret={secrets['SCRM_WHATSAPP_APP_SECRET']} "
               f"verify token={secrets['SCRM_WHATSAPP_VERIFY_TOKEN']}")
        _print(f"scrm: POST events to http://127.0.0.1:{config.ports['ingest']}/v1/events ; "
               f"reports at http://127.0.0.1:{config.ports['reporting']}/v1/reports/overview ; Ctrl-C stops")
        watch(stack, plain=plain, stopping=stopping)
        return 0
    except StackError as exc:
        _print(f"scrm: cannot start: {exc}")
        return 1
    finally:
        _print("scrm: stopping every process started …")
        stack.stop_all()
        _print("scrm: stopped.")


def watch(stack: Stack, *, plain: bool, stopping: dict[str, bool]) -> None:
    ports = {n: p.port for n, p in stack.procs.items() if p.port is not None and n != "broker"}
    prev: Snapshot | None = None
    with httpx.Client(timeout=1.0) as client:
        if plain:
            while not stopping["now"]:
                _check(stack)
                snap = take_snapshot(client, ports, {n: p.alive for n, p in stack.procs.items()})
                figures = summary(prev, snap)
                prev = snap
                health = " ".join(f"{n}={h}" for n, h in snap.health.items())
                _print("scrm: " + " | ".join(f"{k}={v}" for k, v in figures.items()) + " | " + health)
                _wait(5.0, stopping)
            return
        from rich.console import Group
        from rich.live import Live
        from rich.table import Table

        with Live(refresh_per_second=2, screen=False) as live:
            while not stopping["now"]:
                _check(stack)
                snap = take_snapshot(client, ports, {n: p.alive for n, p in stack.procs.items()})
                figures = summary(prev, snap)
                prev = snap
                flow = Table(title="scrm — what flows", show_header=False)
                for key, value in figures.items():
                    flow.add_row(key, value)
                health = Table(title="processes")
                health.add_column("process")
                health.add_column("state")
                for name, state in snap.health.items():
                    colour = {"ready": "green", "starting": "yellow"}.get(state, "red")
                    health.add_row(name, f"[{colour}]{state}[/{colour}]")
                live.update(Group(flow, health))
                _wait(1.0, stopping)


def _check(stack: Stack) -> None:
    dead = stack.dead()
    if dead:
        proc = dead[0]
        raise StackError(f"{proc.name} died with code {proc.popen.returncode}; last lines of {proc.log_path}:\n"
                         f"{proc.log_tail()}")


def _wait(seconds: float, stopping: dict[str, bool]) -> None:
    deadline = time.monotonic() + seconds
    while not stopping["now"] and time.monotonic() < deadline:
        time.sleep(0.1)


def main() -> None:
    parser = argparse.ArgumentParser(prog="scrm-stack")
    sub = parser.add_subparsers(dest="command", required=True)
    run_p = sub.add_parser("run", help="start everything and show what flows")
    run_p.add_argument("--root", default=os.environ.get("SCRM_HOME", ".scrm"))
    run_p.add_argument("--plain", action="store_true", help="periodic status lines instead of the live view")
    args = parser.parse_args()
    demo = os.environ.get("SCRM_DEMO", "1") != "0"
    plain = args.plain or not sys.stdout.isatty()
    sys.exit(run(Path(args.root).resolve(), demo=demo, plain=plain))


if __name__ == "__main__":
    main()
