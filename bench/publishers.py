"""Raw `apply_async` from publishing processes: no HTTP, one thread per process.

Each process builds its app the way its side runs in production (ours: the Flask
factory with the project's configuration, so every publish writes the task record
and sends a task-sent event; defaults: bench/defaults_app.py), warms up, then
publishes `noop` for the measured window of the system-wide monotonic clock, or
publishes a fixed number of tasks to fill a queue.
"""

from __future__ import annotations

import json
import multiprocessing
import os
import queue
import subprocess
import sys
import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from devtools.processes import join_or_kill

# Runs Publishers of another source tree (bench/baseline.py): see its docstring.
TREE_PUBLISHER = Path(__file__).with_name("tree_publisher.py")


def load_noop(kind: str, target: Mapping[str, str] | str):
    """The `noop` task of one side: `target` is the environment (ours) or the Redis URL (defaults)."""
    if kind == "ours":
        import bench.tasks  # noqa: F401  (registers noop)
        from backend import create_app
        from backend.jobs import extensions
        from bench.app import apply_candidate_settings
        from config import load_config

        celery = extensions.celery_app(create_app(load_config(dict(target))))
        apply_candidate_settings(celery, target)
        return celery.tasks["noop"]
    from bench.defaults_app import make_app

    return make_app(str(target)).tasks["noop"]


def _publisher(kind, target, go, window, count, out) -> None:
    task = load_noop(kind, target)
    task.apply_async()  # connections opened, scripts loaded, before anyone waits on us
    out.put(("ready", os.getpid()))
    go.wait()
    if count:
        out.put(("done", {"ids": [task.apply_async().id for _ in range(count)]}))
        return
    start, end = window[0], window[1]
    while time.monotonic() < start:  # warm-up: published, not counted
        task.apply_async()
    cpu = time.process_time()
    published = 0
    while True:
        task.apply_async()
        if time.monotonic() > end:
            break
        published += 1
    out.put(("done", {"published": published, "cpu": time.process_time() - cpu}))


@dataclass
class PublishResult:
    processes: int
    seconds: float
    published: int
    cpu_s: float

    @property
    def rate(self) -> float:
        return self.published / self.seconds if self.seconds > 0 else 0.0


class Publishers:
    """`processes` publishing processes; `go()` opens the window, `result()` collects."""

    def __init__(self, kind: str, target, processes: int, count_each: int = 0):
        context = multiprocessing.get_context("spawn")
        self._out = context.Queue()
        self._go = context.Event()
        self._window = context.Array("d", 2)
        self._children = [
            context.Process(
                target=_publisher, args=(kind, target, self._go, self._window, count_each, self._out),
                name=f"publisher-{number}", daemon=True,
            )
            for number in range(processes)
        ]
        for child in self._children:
            child.start()
        self.pids = [self._get("ready") for _ in self._children]
        self.start = self.end = 0.0

    def _get(self, kind: str, timeout: float = 120.0):
        try:
            got, payload = self._out.get(timeout=timeout)
        except queue.Empty:
            raise RuntimeError(f"a publishing process did not send {kind!r} in time") from None
        if got != kind:
            raise RuntimeError(f"publishing process sent {got!r}, expected {kind!r}")
        return payload

    def go(self, warmup: float = 0.0, seconds: float = 0.0) -> tuple[float, float]:
        self.start = time.monotonic() + warmup
        self.end = self.start + seconds
        self._window[0], self._window[1] = self.start, self.end
        self._go.set()
        return self.start, self.end

    def result(self) -> PublishResult:
        done = [self._get("done", timeout=max(self.end - time.monotonic(), 0) + 60) for _ in self._children]
        self.stop()
        return PublishResult(
            len(self._children), self.end - self.start,
            sum(d["published"] for d in done), sum(d["cpu"] for d in done),
        )

    def ids(self) -> list[str]:
        """The ids published in fill mode (count_each > 0), once every process is done."""
        ids = [task_id for _ in self._children for task_id in self._get("done", timeout=600)["ids"]]
        self.stop()
        return ids

    def stop(self) -> None:
        join_or_kill(self._children, 10)


class TreePublishers:
    """Publishers of the source tree at `root`, with our configuration from `env`, run by
    bench/tree_publisher.py in a process of its own; the same go(), result() and ids()."""

    def __init__(self, root: Path, env: Mapping[str, str], processes: int, count_each: int = 0):
        self.processes = processes
        command = [sys.executable, "-P", str(TREE_PUBLISHER), "--processes", str(processes)]
        if count_each:
            command += ["--count", str(count_each * processes)]
        self._driver = subprocess.Popen(
            command, cwd=root, env={**env, "PYTHONPATH": str(root)}, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
            text=True,
        )
        self.pids: list[int] = self._read("ready")
        self.start = self.end = 0.0

    def _read(self, key: str):
        """The next message carrying `key`; lines that are not the driver's messages are skipped."""
        assert self._driver.stdout is not None
        for line in self._driver.stdout:
            try:
                message = json.loads(line)
            except ValueError:
                continue
            if isinstance(message, dict) and key in message:
                return message[key]
        self.stop()
        raise RuntimeError(f"the tree publisher exited ({self._driver.returncode}) before sending {key!r}")

    def go(self, warmup: float = 0.0, seconds: float = 0.0) -> tuple[float, float]:
        assert self._driver.stdin is not None
        self._driver.stdin.write(json.dumps({"go": [warmup, seconds]}) + "\n")
        self._driver.stdin.flush()
        self.start, self.end = self._read("window")
        return self.start, self.end

    def result(self) -> PublishResult:
        done = self._read("result")
        self.stop()
        return PublishResult(done["processes"], done["seconds"], done["published"], done["cpu_s"])

    def ids(self) -> list[str]:
        ids: list[str] = self._read("ids")
        self.stop()
        return ids

    def stop(self) -> None:
        assert self._driver.stdin is not None and self._driver.stdout is not None
        self._driver.stdin.close()
        try:
            self._driver.wait(30)
        except subprocess.TimeoutExpired:
            self._driver.kill()
            self._driver.wait(5)
        self._driver.stdout.close()


def fill_queue(kind: str, target, total: int, processes: int = 2, root: Path | None = None) -> list[str]:
    """Publish `total` noops (no worker consuming yet); their ids. With `root`, ours from
    the source tree there (`target` is then the environment)."""
    processes = max(1, min(processes, total))
    count_each = -(-total // processes)
    publishers = (TreePublishers(root, target, processes, count_each) if root is not None
                  else Publishers(kind, target, processes, count_each=count_each))
    publishers.go()
    return publishers.ids()
