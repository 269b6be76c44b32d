"""`make bench` / `python -m scrm_bench.main`: the four figures, printed and written to bench/results/<date>.json.

(a) floor — raw aiokafka pass-through on a fresh Tansu broker;
(b) trigger-engine alone — events/s consumed → decided → commands relayed (target ≥ 2,000/s);
(c) full pipeline — open-loop HTTP payments to the simulator (target ≥ 300/s for 60 s with p99 ≤ 1 s);
(d) abandoned carts — 10,000 carts with stage 1 due at once → every stage-1 command relayed (target ≤ 30 s).
"""

from __future__ import annotations

import argparse
import shutil
import signal
import sys
import traceback
import warnings
from datetime import date
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table

from scrm_bench import results
from scrm_bench.carts import DEFAULT_CARTS, DEFAULT_RUNS
from scrm_bench.carts import TARGET_SECONDS as TARGET_CART_SECONDS
from scrm_bench.engine import TARGET_EVENTS_PER_S
from scrm_bench.infra import bench_root
from scrm_bench.pipeline import TARGET_P99_S

TARGET_RATE, TARGET_DURATION = 300.0, 60.0


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="scrm-bench", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--only", choices=["a", "b", "c", "d"], action="append",
                        help="run only this figure (repeatable); default all four")
    parser.add_argument("--rate", type=float, default=300.0, help="(c) payments per second offered (default 300)")
    parser.add_argument("--duration", type=float, default=60.0, help="(c) seconds of load (default 60)")
    parser.add_argument("--batch", type=int, default=10,
                        help="(c) events per HTTP request, all stamped with the request's slot time (default 10)")
    parser.add_argument("--floor-messages", type=int, default=50_000, help="(a) messages (default 50000)")
    parser.add_argument("--floor-bytes", type=int, default=300, help="(a) payload bytes (default 300)")
    parser.add_argument("--events", type=int, default=20_000, help="(b) payments pre-loaded (default 20000)")
    parser.add_argument("--carts", type=int, default=DEFAULT_CARTS,
                        help=f"(d) abandoned carts with stage 1 due at once (default {DEFAULT_CARTS})")
    parser.add_argument("--cart-runs", type=int, default=DEFAULT_RUNS,
                        help=f"(d) runs, each on a fresh stack; the median is reported (default {DEFAULT_RUNS})")
    parser.add_argument("--results-dir", type=Path, default=None, help="where <date>.json goes (bench/results)")
    parser.add_argument("--keep", action="store_true", help="keep the stack's logs under .scrm/bench-*")
    parser.add_argument("--env", action="append", default=[], metavar="KEY=VALUE",
                        help="(b, c, d) extra environment for the stack's processes, e.g. to try a setting; recorded")
    parser.add_argument("--profile", type=Path, default=None, metavar="DIR",
                        help="(b, c) sample the processes with py-spy while measuring, into DIR (slows them down)")
    args = parser.parse_args(argv)
    if args.rate <= 0 or args.duration <= 0 or args.batch < 1 or args.carts < 1 or args.cart_runs < 1:
        parser.error("--rate and --duration must be positive, --batch, --carts and --cart-runs at least 1")
    if any("=" not in item for item in args.env):
        parser.error("--env takes KEY=VALUE")
    args.extra_env = dict(item.split("=", 1) for item in args.env)
    return args


def _fmt(value: Any, unit: str = "") -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:,.3f}{unit}" if abs(value) < 10 else f"{value:,.1f}{unit}"
    return f"{value}{unit}"


def _verdict(met: bool | None) -> str:
    return {True: "[green]met[/green]", False: "[red]NOT met[/red]", None: "[yellow]n/a[/yellow]"}[met]


def render(document: dict[str, Any], console: Console) -> None:
    """The results as tables."""
    machine, kafka = document["machine"], document["kafka_client"]
    console.print(f"[bold]scrm bench {document['date']}[/bold] — {machine.get('cpu_count')} CPUs "
                  f"({machine.get('cpu_model', '?')}), Python {machine['python']}, aiokafka "
                  f"{kafka.get('aiokafka')} C extension "
                  f"{'loaded' if kafka.get('c_extension_loaded') else 'NOT loaded'}")
    table = Table(title="figures", show_lines=True)
    for column in ("figure", "measured", "target", "verdict", "details"):
        table.add_column(column)
    figures = {n: f for n, f in document["figures"].items() if "error" not in f}
    for name, f in document["figures"].items():
        if "error" in f:
            table.add_row(name, "-", "-", _verdict(False), f"[red]failed: {f['error']}[/red]")
    if "floor" in figures:
        f = figures["floor"]
        table.add_row("(a) floor: aiokafka pass-through", f"{_fmt(f.get('msgs_per_s'))} msgs/s", f["target"],
                      _verdict(f["target_met"]),
                      f"{f.get('received')}/{f.get('messages')} × {f.get('payload_bytes')} B "
                      f"in {_fmt(f.get('seconds'))} s"
                      f"; produce alone {_fmt(f.get('produce_msgs_per_s'))} msgs/s")
    if "trigger_engine" in figures:
        f = figures["trigger_engine"]
        top = ", ".join(f"{k} {v['cores']}" for k, v in list(f.get("cpu", {}).items())[:3])
        table.add_row("(b) trigger-engine alone", f"{_fmt(f.get('events_per_s'))} events/s", f["target"],
                      _verdict(f["target_met"]),
                      f"{f.get('commands')}/{f.get('events')} commands in {_fmt(f.get('seconds'))} s; "
                      f"cores used: {top}")
    if "pipeline" in figures:
        f = figures["pipeline"]
        lat = f.get("latency_s", {})
        table.add_row("(c) full pipeline", f"{_fmt(f.get('throughput_in_window_per_s'))} orders/s, "
                      f"p99 {_fmt(lat.get('p99'), ' s')}", f["target"], _verdict(f["target_met"]),
                      f"{f.get('received')}/{f.get('offered')} received ({f.get('refused')} refused) at "
                      f"{f.get('rate')}/s × {f.get('duration')} s, batch {f.get('batch')}")
    if "carts" in figures:
        f = figures["carts"]
        outcomes = ", ".join(f"{k} {v:,.0f}" for k, v in sorted(f.get("decisions", {}).items()))
        top = ", ".join(f"{k} {v['cores']}" for k, v in list(f.get("cpu", {}).items())[:3])
        runs = ", ".join(_fmt(v) for v in f.get("runs_seconds", []))
        median = f", median of {f.get('runs')} runs: {runs} s" if f.get("runs", 1) > 1 else ""
        table.add_row("(d) abandoned carts, stage 1 due at once",
                      f"{_fmt(f.get('seconds'))} s ({_fmt(f.get('carts_per_s'))} carts/s){median}", f["target"],
                      _verdict(f["target_met"]),
                      f"{f.get('stage_1_commands')}/{f.get('carts')} stage-1 commands relayed; carts consumed "
                      f"after {_fmt(f.get('carts_consumed_seconds'), ' s')}; decisions: {outcomes}; "
                      f"cores used: {top}")
    console.print(table)
    if "pipeline" in figures:
        f = figures["pipeline"]
        lat = Table(title="(c) latency: scheduled send → simulator received_at (seconds)")
        for column in ("source", "count", "p50", "p90", "p99", "p99.9", "max"):
            lat.add_column(column)
        s = f.get("latency_s", {})
        lat.add_row("measured per order", *(_fmt(s.get(k)) for k in ("count", "p50", "p90", "p99", "p99.9", "max")))
        h = f.get("sender_event_to_provider_s", {})
        lat.add_row("sender histogram (ingest → provider)", _fmt(h.get("count")),
                    *(_fmt(h.get(k)) for k in ("p50", "p90", "p99", "p99.9")), "-")
        d = f.get("dispatch_lag_s", {})
        lat.add_row("load generator dispatch lag", _fmt(d.get("count")),
                    *(_fmt(d.get(k)) for k in ("p50", "p90", "p99", "p99.9", "max")))
        r = f.get("ingest_request_s", {})
        lat.add_row("ingest POST round trip", _fmt(r.get("count")),
                    *(_fmt(r.get(k)) for k in ("p50", "p90", "p99", "p99.9", "max")))
        for key, h in f.get("stages_s", {}).items():
            if h.get("count"):
                lat.add_row(f"  stage {key}", _fmt(h.get("count")),
                            *(_fmt(h.get(k)) for k in ("p50", "p90", "p99", "p99.9")), "-")
        console.print(lat)
        if f.get("peak_backlog"):
            console.print("peak backlog during the load: " + ", ".join(
                f"{k} {v:,.0f}" for k, v in f["peak_backlog"].items()))
        cpu = Table(title="(c) CPU during the load window (cores)")
        cpu.add_column("process")
        cpu.add_column("cores")
        for name, used in f.get("cpu_during_load", {}).items():
            cpu.add_row(name, f"{used['cores']:.2f}")
        console.print(cpu)
        console.print(f"settings: {f.get('settings')}")
    for f in figures.values():
        for name, hot in (f.get("profile") or {}).get("hot", {}).items():
            console.print(f"[bold]py-spy {name}[/bold]: {hot['samples']} samples, busy {hot['busy_share']:.0%}")
            for frame, share in hot["own"]:
                console.print(f"   own  {share:6.1%}  {frame}")
            for frame, share in hot["inclusive"]:
                console.print(f"   incl {share:6.1%}  {frame}")


def _terminate(signum: int, _frame: object) -> None:
    """SIGTERM unwinds like Ctrl-C, so every `finally` stops the processes the benchmark started."""
    raise SystemExit(128 + signum)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    signal.signal(signal.SIGTERM, _terminate)
    warnings.filterwarnings("ignore", message="XDG_RUNTIME_DIR is not set")
    only = set(args.only or ["a", "b", "c", "d"])
    console = Console(width=None if sys.stdout.isatty() else 160)
    document = results.new_document(date.today(), argv=sys.argv[1:] if argv is None else argv)
    failures = 0
    kafka = document["kafka_client"]
    if not kafka.get("c_extension_loaded"):
        console.print("[yellow]warning: aiokafka's C extension is not loaded; figures will be lower[/yellow]")

    def attempt(name: str, label: str, fn: Any) -> None:
        nonlocal failures
        root = bench_root()
        console.print(f"[bold]{label}[/bold] … (stack under {root})")
        try:
            fn(root)
        except Exception as exc:
            failures += 1
            console.print(f"[red]{label} failed: {exc}[/red]")
            traceback.print_exc()
            document["figures"][name] = results.figure(name, {"error": f"{type(exc).__name__}: {exc}"},
                                                        target="-", met=False)
        finally:
            if not args.keep:
                shutil.rmtree(root, ignore_errors=True)

    if "a" in only:
        from scrm_bench.floor import run_floor

        def floor(root: Path) -> None:
            data = run_floor(root, messages=args.floor_messages, size=args.floor_bytes)
            document["figures"]["floor"] = results.figure(
                "floor", data, target="reference (no target)", met=None if data["complete"] else False)

        attempt("floor", "(a) floor", floor)
    if "b" in only:
        from scrm_bench.engine import run_engine

        def engine(root: Path) -> None:
            data = run_engine(root, events=args.events, env=args.extra_env,
                              profile_dir=args.profile.resolve() if args.profile else None)
            met = bool(data["complete"] and data["events_per_s"] >= TARGET_EVENTS_PER_S)
            document["figures"]["trigger_engine"] = results.figure(
                "trigger_engine", data, target=f"≥ {TARGET_EVENTS_PER_S:,.0f} events/s", met=met)

        attempt("trigger_engine", "(b) trigger-engine alone", engine)
    if "c" in only:
        from scrm_bench.pipeline import run_pipeline

        def pipeline(root: Path) -> None:
            data = run_pipeline(root, rate=args.rate, duration=args.duration, batch=args.batch, env=args.extra_env,
                                profile_dir=args.profile.resolve() if args.profile else None)
            data["met_at_offered_rate"] = data.pop("target_met")
            official = args.rate >= TARGET_RATE and args.duration >= TARGET_DURATION
            document["figures"]["pipeline"] = results.figure(
                "pipeline", data, target=f"≥ {TARGET_RATE:g}/s for {TARGET_DURATION:g} s, p99 ≤ {TARGET_P99_S:g} s",
                met=data["met_at_offered_rate"] if official else None)
            if not official:
                console.print(f"[yellow](c) ran below the target load ({args.rate:g}/s × {args.duration:g} s): "
                              f"at that load p99/throughput {'met' if data['met_at_offered_rate'] else 'NOT met'}"
                              "[/yellow]")

        attempt("pipeline", "(c) full pipeline", pipeline)
    if "d" in only:
        from scrm_bench.carts import run_carts_median, target_met

        def carts(root: Path) -> None:
            data = run_carts_median(root, runs=args.cart_runs, carts=args.carts, env=args.extra_env)
            official = args.carts >= DEFAULT_CARTS
            document["figures"]["carts"] = results.figure(
                "carts", data, target=f"{DEFAULT_CARTS:,} carts: every stage-1 command relayed ≤ "
                                      f"{TARGET_CART_SECONDS:g} s",
                met=target_met(data) if official or not data["complete"] else None)

        attempt("carts", "(d) abandoned carts", carts)

    render(document, console)
    path = results.write(document, args.results_dir or results.results_dir())
    console.print(f"results written to {path}")
    missed = [n for n, f in document["figures"].items() if f.get("target_met") is False]
    if missed:
        console.print(f"[red]targets NOT met: {', '.join(missed)}[/red]")
    return 1 if failures else 0


def run() -> None:
    sys.exit(main())


if __name__ == "__main__":
    run()
