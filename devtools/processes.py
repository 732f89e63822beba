"""Child processes for the tests and `make bench`: each in a session of its own, with
its output in a log file, stopped with its whole group; and a polling wait."""

from __future__ import annotations

import os
import signal
import subprocess
import time
from collections.abc import Callable, Mapping
from pathlib import Path

PROJECT_ROOT = Path(__file__).resolve().parent.parent


class Process:
    """A child process in its own process group, with its output in a log file."""

    def __init__(
        self, name: str, command: list[str], env: Mapping[str, str], log_dir: Path, cwd: Path = PROJECT_ROOT
    ):
        self.name = name
        self.log_path = log_dir / f"{name}.log"
        self._log = open(self.log_path, "wb")
        self.popen = subprocess.Popen(
            command,
            cwd=cwd,
            env=dict(env),
            stdin=subprocess.DEVNULL,
            stdout=self._log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )

    def alive(self) -> bool:
        return self.popen.poll() is None

    def log_tail(self, lines: int = 30) -> str:
        return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 15.0) -> None:
        """Signal the main process, then kill the whole group if it lingers."""
        if self.alive():
            self.popen.send_signal(sig)
            try:
                self.popen.wait(timeout)
            except subprocess.TimeoutExpired:
                pass
        try:
            os.killpg(self.popen.pid, signal.SIGKILL)  # pool children, if any are left
        except ProcessLookupError:
            pass
        self.popen.wait(5)
        self._log.close()


def terminate_or_kill(process: subprocess.Popen[bytes], timeout: float) -> None:
    """SIGTERM, then SIGKILL if the process has not ended within `timeout` s; reaped either way."""
    process.terminate()
    try:
        process.wait(timeout)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()


def join_or_kill(children, timeout: float) -> None:
    """Wait up to `timeout` s for each multiprocessing child to end; kill the ones that do not."""
    for child in children:
        child.join(timeout)
        if child.is_alive():
            child.kill()
            child.join(5)


def wait_until(predicate: Callable[[], object], timeout: float, interval: float = 0.05, what: str = "condition"):
    """Poll until predicate() is truthy; returns its value or raises TimeoutError."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise TimeoutError(f"timed out after {timeout} s waiting for {what}")
        time.sleep(interval)
