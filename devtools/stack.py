"""The whole development stack in the foreground: what `make run` runs.

Redis (embedded when none is configured or running), the API under gunicorn,
one Celery worker, celery beat and Flower, each child's output prefixed with its name.
Ctrl-C stops everything, Redis last, and leaves no process behind. REDIS_MODE=sentinel
(`make run REDIS_MODE=sentinel`) starts a master, a replica and three sentinels instead
of one Redis, to try a failover by hand (devtools/sentinel.py).

    .venv/bin/python -m devtools.stack      # from the project root
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from types import FrameType
from typing import TextIO
from urllib.parse import urlsplit, urlunsplit

import redis

from config import BaseConfig, ConfigError, load_config, read_environment
from devtools.redis_server import RedisServer, quick_client
from devtools.sentinel import SentinelSetup

PROJECT_ROOT = Path(__file__).resolve().parent.parent
VENV = PROJECT_ROOT / ".venv"
REDIS_DATA_DIR = PROJECT_ROOT / "var" / "redis"
# REDIS_MODE=sentinel's master, replica and sentinels, made afresh at each start.
SENTINEL_DATA_DIR = PROJECT_ROOT / "var" / "sentinel"
LOCAL_REDIS_PORT = 6379
LOCAL_REDIS_URL = f"redis://127.0.0.1:{LOCAL_REDIS_PORT}/0"
# Any of these means "I have a Redis": then the stack starts none.
REDIS_URL_VARIABLES = ("REDIS_URL", "BROKER_URL", "RESULT_BACKEND")
HEALTH_TIMEOUT = 60.0
# Per child, but all children are stopped at once, so the whole stop stays near this.
STOP_TIMEOUT = 10.0
# A terminal's Ctrl-C already reached every child: let them finish on their own first,
# since a second signal makes some (Flower) print a traceback on the way out.
CTRL_C_GRACE = 1.0
# After SIGTERM was not enough, time left for a child's cold stop before SIGKILL.
COLD_STOP_TIMEOUT = 5.0
POLL_INTERVAL = 0.25
# ANSI colours for the prefixes, used only when stdout is a terminal.
COLOURS = {"stack": "1", "redis": "31", "api": "32", "worker": "33", "beat": "36", "flower": "35"}


class StackFailure(RuntimeError):
    """The stack cannot run; the message says which part failed and why."""


class PrefixedLog:
    """Whole lines, one writer at a time, each prefixed with the name of the process that wrote it."""

    def __init__(self, stream: TextIO) -> None:
        self._stream = stream
        self._lock = threading.Lock()
        self._coloured = stream.isatty() and "NO_COLOR" not in os.environ

    def line(self, name: str, text: str) -> None:
        prefix = f"{name:<8}|"
        if self._coloured:
            prefix = f"\033[{COLOURS.get(name, '0')}m{prefix}\033[0m"
        with self._lock:
            try:
                self._stream.write(f"{prefix} {text}\n")
                self._stream.flush()
            except OSError:  # stdout gone (e.g. piped into `head`): losing log lines must not stop the stack
                pass

    def lines(self, name: str, text: str) -> None:
        for line in text.splitlines():
            self.line(name, line)


class ShutdownRequest:
    """Set by SIGINT or SIGTERM; a second signal asks to stop without waiting."""

    def __init__(self) -> None:
        self.requested = threading.Event()
        self.hurried = threading.Event()
        self.signal: signal.Signals | None = None

    def install(self) -> None:
        signal.signal(signal.SIGINT, self._handle)
        signal.signal(signal.SIGTERM, self._handle)

    def _handle(self, signum: int, frame: FrameType | None) -> None:
        if self.requested.is_set():
            self.hurried.set()
        else:
            self.signal = signal.Signals(signum)
        self.requested.set()

    def wait(self, seconds: float) -> bool:
        return self.requested.wait(seconds)


@dataclass(frozen=True)
class ChildSpec:
    name: str
    argv: list[str]
    # Sent when SIGTERM was not enough, before resorting to SIGKILL.
    cold_stop_signal: signal.Signals | None = None


@dataclass
class Child:
    spec: ChildSpec
    process: subprocess.Popen[str]
    output: threading.Thread

    @property
    def name(self) -> str:
        return self.spec.name

    def describe_exit(self) -> str:
        code = self.process.returncode
        if code is not None and code < 0:
            return f"was killed by {signal.Signals(-code).name}"
        return f"exited with code {code}"


# --- environment -------------------------------------------------------------------------


def child_environment() -> dict[str, str]:
    """The project's `.env` under the real environment, plus what the children need to find the venv."""
    # The same merge the app does, so the stack and the app agree on every setting.
    env = read_environment()
    # The scripts call `celery` by name: it must be the venv's.
    env["PATH"] = os.pathsep.join([str(VENV / "bin"), env.get("PATH", "")])
    env["VIRTUAL_ENV"] = str(VENV)
    # Python children buffer stdout when it is a pipe; unbuffered, their lines show up when written.
    env["PYTHONUNBUFFERED"] = "1"
    env.setdefault("CELERY_HOSTNAME", "worker1@%h")
    return env


def redacted(url: str) -> str:
    """The URL with its password hidden, fit for a log line."""
    parts = urlsplit(url)
    if not parts.password:
        return url
    netloc = parts.netloc.replace(f":{parts.password}@", ":***@", 1)
    return urlunsplit(parts._replace(netloc=netloc))


def api_base_url(gunicorn_bind: str) -> str:
    """Where this machine reaches the API, from the first address gunicorn binds."""
    first = gunicorn_bind.replace(",", " ").split()[0]
    host, _, port = first.rpartition(":")
    if host in ("", "0.0.0.0", "[::]", "::"):
        host = "127.0.0.1"
    return f"http://{host}:{port}"


# --- Redis ---------------------------------------------------------------------------------


def local_redis_answers() -> bool:
    """True when a Redis on 127.0.0.1:6379 answers PING; False when nothing listens there."""
    client = quick_client(LOCAL_REDIS_PORT, timeout=0.5)
    try:
        return bool(client.ping())
    except redis.AuthenticationError:
        raise StackFailure(
            f"a Redis on 127.0.0.1:{LOCAL_REDIS_PORT} requires a password: "
            f"set REDIS_URL=redis://:<password>@127.0.0.1:{LOCAL_REDIS_PORT}/0 in .env"
        ) from None
    except redis.RedisError:
        # Nothing there (or not a Redis): starting ours will either work or fail with the reason in its log.
        return False
    finally:
        client.close()


def provide_sentinels(env: dict[str, str], log: PrefixedLog) -> SentinelSetup:
    """REDIS_MODE=sentinel: a fresh master, replica and three sentinels; REDIS_URL names the sentinels."""
    configured = [name for name in REDIS_URL_VARIABLES if env.get(name)]
    if configured:
        raise StackFailure(f"REDIS_MODE=sentinel starts its own Redis: unset {', '.join(configured)}")
    shutil.rmtree(SENTINEL_DATA_DIR, ignore_errors=True)
    setup = SentinelSetup(SENTINEL_DATA_DIR, own_process_group=True)
    log.line("redis", "REDIS_MODE=sentinel: starting a master, a replica and three sentinels")
    try:
        setup.start()
    except RuntimeError as error:
        raise StackFailure(f"the Sentinel setup did not start: {error}") from None
    env["REDIS_URL"] = setup.url
    log.line("redis", f"master pid {setup.master.pid} on port {setup.master.port}, "
                      f"replica on port {setup.replica.port}, REDIS_URL={setup.url}")
    log.line("redis", f"try a failover: kill -9 {setup.master.pid}")
    return setup


def provide_redis(env: dict[str, str], log: PrefixedLog) -> RedisServer | SentinelSetup | None:
    """Use the configured or already running Redis; otherwise start a private one (the returned
    server), or a Sentinel setup when REDIS_MODE=sentinel."""
    mode = env.get("REDIS_MODE") or "single"
    if mode == "sentinel":
        return provide_sentinels(env, log)
    if mode != "single":
        raise StackFailure(f'REDIS_MODE must be "single" or "sentinel", got {mode!r}')
    configured = [name for name in REDIS_URL_VARIABLES if env.get(name)]
    if configured:
        settings = ", ".join(f"{name}={redacted(env[name])}" for name in configured)
        log.line("redis", f"using the configured {settings}; starting no Redis")
        return None
    if local_redis_answers():
        log.line("redis", f"a Redis already answers at 127.0.0.1:{LOCAL_REDIS_PORT}; using it")
        env["REDIS_URL"] = LOCAL_REDIS_URL
        return None
    # Its own process group: a terminal's Ctrl-C must not stop the broker before the
    # worker has shut down, or the worker cannot put its unacked tasks back in the queue.
    server = RedisServer(LOCAL_REDIS_PORT, REDIS_DATA_DIR, appendonly=True, own_process_group=True)
    data_dir = REDIS_DATA_DIR.relative_to(PROJECT_ROOT)
    log.line("redis", f"no Redis configured or running: starting one, data in {data_dir}/")
    try:
        server.start()
    except RuntimeError as error:
        raise StackFailure(f"the embedded Redis did not start: {error}") from None
    env["REDIS_URL"] = server.url
    return server


def tail_file(path: Path, offset: int, name: str, log: PrefixedLog, done: threading.Event) -> None:
    """Copy the lines appended to `path` after `offset` into the log, until `done` is set and all is read."""
    pending = b""
    with path.open("rb") as file:
        file.seek(offset)
        while True:
            chunk = file.readline()
            if chunk:
                pending += chunk
                if pending.endswith(b"\n"):
                    log.line(name, pending.decode(errors="replace").rstrip("\n"))
                    pending = b""
            elif done.is_set():
                break
            else:
                time.sleep(0.2)
    if pending:
        log.line(name, pending.decode(errors="replace"))


def start_tailing(path: Path, offset: int, name: str, log: PrefixedLog) -> tuple[threading.Thread, threading.Event]:
    done = threading.Event()
    thread = threading.Thread(
        target=tail_file, args=(path, offset, name, log, done), name=f"tail-{name}", daemon=True
    )
    thread.start()
    return thread, done


# --- children ------------------------------------------------------------------------------


def child_specs() -> list[ChildSpec]:
    """Every child, in start order."""
    return [
        ChildSpec(
            "api", [str(VENV / "bin" / "gunicorn"), "--config", "gunicorn.conf.py", "backend:create_app()"]
        ),
        # celery_worker.sh maps SIGTERM to Celery's soft shutdown: running tasks get
        # WORKER_SOFT_SHUTDOWN_TIMEOUT (8 s, below STOP_TIMEOUT), then their messages go
        # back to the queue while Redis is still up. SIGQUIT is the backstop (cold
        # shutdown); after a SIGKILL they would wait out the visibility timeout (60 s).
        ChildSpec("worker", ["./celery_worker.sh"], cold_stop_signal=signal.SIGQUIT),
        # The one beat of this deployment; its schedule state goes to var/beat/.
        ChildSpec("beat", ["./celery_beat.sh"]),
        ChildSpec("flower", ["./flower.sh"]),
    ]


def pump_output(name: str, stream: TextIO, log: PrefixedLog) -> None:
    with stream:
        for line in stream:
            log.line(name, line.rstrip("\n"))


def start_child(spec: ChildSpec, env: dict[str, str], log: PrefixedLog) -> Child:
    # Same process group as the stack (no new session): a group signal reaches every child.
    try:
        process = subprocess.Popen(
            spec.argv,
            cwd=PROJECT_ROOT,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            encoding="utf-8",
            errors="replace",
            bufsize=1,
        )
    except OSError as error:
        raise StackFailure(f"cannot start {spec.name} ({' '.join(spec.argv)}): {error}") from None
    assert process.stdout is not None
    output = threading.Thread(
        target=pump_output, args=(spec.name, process.stdout, log), name=f"output-{spec.name}", daemon=True
    )
    output.start()
    log.line("stack", f"started {spec.name} (pid {process.pid}): {' '.join(spec.argv)}")
    return Child(spec, process, output)


def fail_if_a_child_died(children: Sequence[Child], shutdown: ShutdownRequest) -> None:
    for child in children:
        if child.process.poll() is None:
            continue
        # A terminal's Ctrl-C reaches the children too, and one may exit before our own
        # handler has run: give the signal a moment before calling the exit unexpected.
        if shutdown.wait(0.5):
            return
        raise StackFailure(f"{child.name} {child.describe_exit()} unexpectedly; stopping the rest")


def api_is_healthy(health_url: str) -> bool:
    try:
        with urllib.request.urlopen(health_url, timeout=1.0) as response:
            return response.status == 200
    except (urllib.error.URLError, OSError):
        return False


def wait_until_api_is_healthy(health_url: str, children: Sequence[Child], shutdown: ShutdownRequest) -> bool:
    """True once the API answers; False if a stop was asked for first. Raises if it never does."""
    deadline = time.monotonic() + HEALTH_TIMEOUT
    while not shutdown.requested.is_set():
        fail_if_a_child_died(children, shutdown)
        if api_is_healthy(health_url):
            return True
        if time.monotonic() > deadline:
            raise StackFailure(f"the API did not answer {health_url} within {HEALTH_TIMEOUT:.0f} s")
        shutdown.wait(0.5)
    return False


def supervise(children: Sequence[Child], shutdown: ShutdownRequest) -> None:
    """Return when a stop is asked for; raise if a child dies first."""
    while not shutdown.wait(POLL_INTERVAL):
        fail_if_a_child_died(children, shutdown)


def still_running(children: Sequence[Child]) -> list[Child]:
    return [child for child in children if child.process.poll() is None]


def wait_for_exit(
    children: Sequence[Child], seconds: float, interrupt: threading.Event | None = None
) -> list[Child]:
    """Wait until every child has exited, `seconds` pass or `interrupt` is set; the ones still running."""
    deadline = time.monotonic() + seconds
    while still_running(children) and time.monotonic() < deadline:
        if interrupt is not None and interrupt.is_set():
            break
        time.sleep(0.1)
    return still_running(children)


def stop_children(children: Sequence[Child], log: PrefixedLog, shutdown: ShutdownRequest) -> None:
    """SIGTERM to every running child at once; those that outlast STOP_TIMEOUT get a cold stop, then SIGKILL."""
    running = still_running(children)
    if shutdown.signal == signal.SIGINT:
        running = wait_for_exit(running, CTRL_C_GRACE, shutdown.hurried)
    for child in running:
        log.line("stack", f"stopping {child.name} (pid {child.process.pid})")
        child.process.terminate()
    running = wait_for_exit(running, STOP_TIMEOUT, shutdown.hurried)
    cold_stopping = [child for child in running if child.spec.cold_stop_signal is not None]
    for child in cold_stopping:
        assert child.spec.cold_stop_signal is not None
        log.line("stack", f"{child.name} is still running: sending {child.spec.cold_stop_signal.name}")
        child.process.send_signal(child.spec.cold_stop_signal)
    wait_for_exit(cold_stopping, COLD_STOP_TIMEOUT)
    for child in still_running(running):
        log.line("stack", f"{child.name} did not stop in time: killing it")
        child.process.kill()
        child.process.wait()
    for child in children:
        # Output threads end at EOF; a grandchild that kept the pipe open must not hold us here.
        child.output.join(timeout=2.0)


# --- main ----------------------------------------------------------------------------------


def print_banner(settings: BaseConfig, api_url: str, log: PrefixedLog) -> None:
    flower_url = settings.FLOWER_URL
    for line in [
        "-" * 64,
        f"API        {api_url}",
        f"dashboard  {api_url}/",
        f"docs       {api_url}/docs",
        f"Flower     {flower_url}",
        "",
        "Submit a long task, then follow it with the id from the Location header:",
        f"  curl -i {api_url}/longtask",
        f"  curl {api_url}/status/<task_id>",
        "",
        "Ctrl-C stops everything.",
        "-" * 64,
    ]:
        log.line("stack", line)


def run_stack(log: PrefixedLog, shutdown: ShutdownRequest) -> int:
    env = child_environment()
    redis_server: RedisServer | SentinelSetup | None = None
    redis_tail: tuple[threading.Thread, threading.Event] | None = None
    children: list[Child] = []
    exit_code = 0
    try:
        try:
            # The settings every child will read, validated before any of them starts. Read
            # for the API's address and Flower's URL only: provide_redis may set REDIS_URL next.
            settings = load_config(env)
        except ConfigError as error:
            raise StackFailure(f"configuration error: {error}") from None
        api_url = api_base_url(settings.GUNICORN_BIND)
        redis_server = provide_redis(env, log)
        if isinstance(redis_server, RedisServer):
            redis_tail = start_tailing(redis_server.log_path, redis_server.log_offset, "redis", log)
        for spec in child_specs():
            if shutdown.requested.is_set():
                break
            children.append(start_child(spec, env, log))
        if wait_until_api_is_healthy(f"{api_url}/healthz", children, shutdown):
            print_banner(settings, api_url, log)
            supervise(children, shutdown)
        reason = f"{shutdown.signal.name} received" if shutdown.signal else "stop requested"
        log.line("stack", f"{reason}: stopping everything")
    except StackFailure as failure:
        log.lines("stack", str(failure))
        exit_code = 1
    finally:
        stop_children(children, log, shutdown)
        # Last, so the worker could still ack and requeue while it shut down.
        if redis_server is not None:
            redis_server.stop()
        if redis_tail is not None:
            thread, done = redis_tail
            done.set()
            thread.join(timeout=2.0)
    log.line("stack", "stopped" if exit_code == 0 else f"stopped after a failure (exit code {exit_code})")
    return exit_code


def main() -> None:
    log = PrefixedLog(sys.stdout)
    shutdown = ShutdownRequest()
    shutdown.install()
    sys.exit(run_stack(log, shutdown))


if __name__ == "__main__":
    main()
