"""A private Redis Sentinel setup: a master, a replica and three sentinels, all on 127.0.0.1,
for the failover test and `make run REDIS_MODE=sentinel`.

    with SentinelSetup(tmp_path) as setup:
        os.environ["REDIS_URL"] = setup.url   # sentinel://127.0.0.1:p1;...;sentinel://127.0.0.1:p3/0
        setup.kill_master()                   # SIGKILL; the sentinels promote the replica
        setup.wait_for_new_master()

The sentinels are the same server binary as the master (find_redis_server()) started with
`--sentinel` and a config file of their own (a sentinel rewrites it as it learns). They
notice a dead master after DOWN_AFTER_MS and need two of three to agree (the quorum).
"""

from __future__ import annotations

import os
import pathlib
import signal
import subprocess
import time
from collections.abc import Callable

import redis

from config import DEFAULT_SENTINEL_MASTER, SENTINEL_SCHEME
from devtools.processes import terminate_or_kill
from devtools.redis_server import HOST, RedisServer, find_redis_server, free_port, quick_client

SENTINELS = 3
QUORUM = 2
# Milliseconds without an answer before a sentinel deems the master down: short, for a
# test and a failover tried by hand; production keeps Sentinel's defaults or near them.
DOWN_AFTER_MS = 1000
# Milliseconds before a failover that stalled is tried again by another sentinel.
FAILOVER_TIMEOUT_MS = 5000


class SentinelProcess:
    """One sentinel: the server binary in sentinel mode, watching `master_port`."""

    def __init__(
        self, port: int, data_dir: pathlib.Path, master_port: int, master_name: str, own_process_group: bool = False
    ) -> None:
        self.own_process_group = own_process_group
        self.port = port
        self.data_dir = data_dir
        self.master_port = master_port
        self.master_name = master_name
        self._process: subprocess.Popen[bytes] | None = None

    @property
    def log_path(self) -> pathlib.Path:
        return self.data_dir / "sentinel.log"

    def write_config(self) -> pathlib.Path:
        path = self.data_dir / "sentinel.conf"
        path.write_text(
            "\n".join([
                f"port {self.port}",
                f"bind {HOST}",
                "daemonize no",
                f"dir {self.data_dir.resolve()}",
                f"logfile {self.log_path.resolve()}",
                f"sentinel monitor {self.master_name} {HOST} {self.master_port} {QUORUM}",
                f"sentinel down-after-milliseconds {self.master_name} {DOWN_AFTER_MS}",
                f"sentinel failover-timeout {self.master_name} {FAILOVER_TIMEOUT_MS}",
                f"sentinel parallel-syncs {self.master_name} 1",
                "",
            ])
        )
        return path

    def start(self, timeout: float = 10.0) -> None:
        self.data_dir.mkdir(parents=True, exist_ok=True)
        config = self.write_config()
        self._process = subprocess.Popen(
            [find_redis_server(), str(config.resolve()), "--sentinel"],
            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
            process_group=0 if self.own_process_group else None,
        )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self._process.poll() is not None:
                raise RuntimeError(f"sentinel on port {self.port} exited while starting:\n{self._log_tail()}")
            if self.master_address() is not None:
                return
            time.sleep(0.05)
        self.stop()
        raise RuntimeError(f"sentinel on port {self.port} did not answer within {timeout:.0f} s:\n{self._log_tail()}")

    def master_address(self) -> tuple[str, int] | None:
        """Where this sentinel says the master is; None when it does not answer."""
        client = quick_client(self.port)
        try:
            address = client.execute_command("SENTINEL", "get-master-addr-by-name", self.master_name)
        except redis.RedisError:
            return None
        finally:
            client.close()
        if not address:
            return None
        host, port = address
        return (host.decode() if isinstance(host, bytes) else str(host), int(port))

    def _log_tail(self) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-20:])
        except OSError:
            return "(no log written)"

    def stop(self, timeout: float = 10.0) -> None:
        process, self._process = self._process, None
        if process is None or process.poll() is not None:
            return
        terminate_or_kill(process, timeout)


class SentinelSetup:
    """A master, one replica of it and three sentinels, on free ports under `data_dir`.
    `own_process_group` as for RedisServer: `make run` stops them itself, after the worker."""

    def __init__(
        self, data_dir: pathlib.Path | str, master_name: str = DEFAULT_SENTINEL_MASTER, own_process_group: bool = False
    ) -> None:
        self.data_dir = pathlib.Path(data_dir)
        self.master_name = master_name
        self.master = RedisServer(
            free_port(), self.data_dir / "master", appendonly=True, own_process_group=own_process_group
        )
        self.replica = RedisServer(
            free_port(), self.data_dir / "replica", appendonly=True, own_process_group=own_process_group,
            extra_args=["--replicaof", HOST, str(self.master.port)],
        )
        self.sentinels = [
            SentinelProcess(
                free_port(), self.data_dir / f"sentinel-{n}", self.master.port, master_name, own_process_group
            )
            for n in range(1, SENTINELS + 1)
        ]

    @property
    def url(self) -> str:
        """The Sentinel URL of database 0, as REDIS_URL takes it."""
        return ";".join(f"{SENTINEL_SCHEME}://{HOST}:{s.port}" for s in self.sentinels) + "/0"

    def start(self) -> SentinelSetup:
        try:
            self.master.start()
            self.replica.start()
            self.wait_for_replica()
            for sentinel in self.sentinels:
                sentinel.start()
            self.wait_for_sentinels_to_know_each_other()
        except BaseException:
            self.stop()
            raise
        return self

    def wait_for_replica(self, timeout: float = 10.0) -> None:
        client = quick_client(self.replica.port)
        try:
            _wait(lambda: client.info("replication").get("master_link_status") == "up", timeout, "the replica to sync")
        finally:
            client.close()

    def wait_for_sentinels_to_know_each_other(self, timeout: float = 15.0) -> None:
        """Each sentinel has found the other two and the replica: a failover can start at once."""

        def known() -> bool:
            for sentinel in self.sentinels:
                client = quick_client(sentinel.port)
                try:
                    master = client.execute_command("SENTINEL", "master", self.master_name)
                except redis.RedisError:
                    return False
                finally:
                    client.close()
                fields = dict(zip(master[::2], master[1::2], strict=True)) if isinstance(master, list) else master
                fields = {_text(k): _text(v) for k, v in fields.items()}
                if int(fields["num-other-sentinels"]) < SENTINELS - 1 or int(fields["num-slaves"]) < 1:
                    return False
            return True

        _wait(known, timeout, "the sentinels to find each other and the replica")

    def master_address(self) -> tuple[str, int] | None:
        """Where the first sentinel that answers says the master is."""
        for sentinel in self.sentinels:
            address = sentinel.master_address()
            if address is not None:
                return address
        return None

    def kill_master(self) -> float:
        """SIGKILL the master, like a lost machine; the moment of the kill (time.monotonic())."""
        pid = self.master.pid
        assert pid is not None, "the master is not running"
        os.kill(pid, signal.SIGKILL)
        killed_at = time.monotonic()
        self.master.wait(5)
        self.master.stop()
        return killed_at

    def wait_for_new_master(self, timeout: float = 30.0) -> float:
        """Block until the sentinels name the replica master and it takes writes; the moment."""
        client = quick_client(self.replica.port)
        try:
            _wait(
                lambda: self.master_address() == (HOST, self.replica.port)
                and client.info("replication").get("role") == "master",
                timeout,
                "the sentinels to promote the replica",
            )
        finally:
            client.close()
        return time.monotonic()

    def stop(self) -> None:
        for sentinel in self.sentinels:
            sentinel.stop()
        self.replica.stop()
        self.master.stop()

    def __enter__(self) -> SentinelSetup:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()


def _text(value: object) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


def _wait(condition: Callable[[], bool], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if condition():
                return
        except redis.RedisError:
            pass
        time.sleep(0.1)
    raise RuntimeError(f"timed out after {timeout:.0f} s waiting for {what}")
