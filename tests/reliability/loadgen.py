"""An HTTP load generator for the load test: N submissions of `add` at a fixed concurrency.

A few processes, each with a few threads, each thread holding one keep-alive connection,
so the client's own GIL does not cap the rate it measures. Submission `i` is
POST /add {"x": i, "y": 0.5}: its result must be i + 0.5. The accepted task ids stream
back while the load runs (results expire, so the caller can check them early); the
status codes, transport errors, connections opened and latencies come back at the end.

    with LoadRun("http://127.0.0.1:5000", total=1000, concurrency=32) as run:
        while not run.finished():
            new = run.accepted()       # [(i, task_id), ...] since the last call
        report = run.report()
"""

from __future__ import annotations

import http.client
import json
import multiprocessing
import queue
import threading
import time
from collections import Counter
from dataclasses import dataclass
from urllib.parse import urlsplit

PATH = "/add"
Y = 0.5
# Far above any healthy latency: a stuck request is counted as an error, never hangs the run.
REQUEST_TIMEOUT_S = 30.0
# Accepted ids are sent to the caller in batches: a queue message per id would cost more than the request.
BATCH = 100
EXAMPLES = 20


def expected_result(index: int) -> float:
    return index + Y


@dataclass
class LoadReport:
    submitted: int
    statuses: Counter[int]
    errors: Counter[str]
    error_examples: list[str]
    connections_opened: int
    latencies: list[float]
    seconds: float

    @property
    def server_errors(self) -> int:
        return sum(count for status, count in self.statuses.items() if status >= 500)

    @property
    def rate(self) -> float:
        return self.submitted / self.seconds if self.seconds else 0.0


class CountingConnection(http.client.HTTPConnection):
    """An HTTP/1.1 connection that counts how often it (re)connects: with keep-alive, once."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.opened = 0

    def connect(self):
        self.opened += 1
        super().connect()


class Tally:
    """One load process's counts, shared by its threads."""

    def __init__(self):
        self.lock = threading.Lock()
        self.statuses: Counter[int] = Counter()
        self.errors: Counter[str] = Counter()
        self.examples: list[str] = []
        self.latencies: list[float] = []
        self.connections = 0

    def error(self, kind: str, example: str) -> None:
        with self.lock:
            self.errors[kind] += 1
            if len(self.examples) < EXAMPLES:
                self.examples.append(example)


def submit_one(connection: http.client.HTTPConnection, index: int, headers: dict, tally: Tally) -> str | None:
    """POST one submission; its task id when accepted (202), else None."""
    body = json.dumps({"x": index, "y": Y})
    started = time.perf_counter()
    try:
        connection.request("POST", PATH, body, headers)
        response = connection.getresponse()
        payload = response.read()
    except (OSError, http.client.HTTPException) as exc:
        # Not retried: the request may have reached the API, and a retry could submit twice.
        tally.error(type(exc).__name__, f"request {index}: {exc!r}")
        connection.close()
        return None
    with tally.lock:
        tally.latencies.append(time.perf_counter() - started)
        tally.statuses[response.status] += 1
    if response.status != 202:
        if len(tally.examples) < EXAMPLES:
            tally.examples.append(f"request {index}: {response.status} {payload[:200]!r}")
        return None
    try:
        return json.loads(payload)["task_id"]
    except (ValueError, KeyError):
        tally.error("bad 202 body", f"request {index}: {payload[:200]!r}")
        return None


def submit_thread(url: str, keep_alive: bool, indices: queue.SimpleQueue, out, tally: Tally) -> None:
    parts = urlsplit(url)
    # http.client reconnects by itself after a response that closed the connection.
    headers = {"Content-Type": "application/json", "Connection": "keep-alive" if keep_alive else "close"}
    connection = CountingConnection(parts.hostname, parts.port, timeout=REQUEST_TIMEOUT_S)
    accepted: list[tuple[int, str]] = []
    while (index := indices.get()) is not None:
        task_id = submit_one(connection, index, headers, tally)
        if task_id is not None:
            accepted.append((index, task_id))
        if len(accepted) >= BATCH:
            out.put(("accepted", accepted))
            accepted = []
    connection.close()
    if accepted:
        out.put(("accepted", accepted))
    with tally.lock:
        tally.connections += connection.opened


def submit_process(url: str, indices: list[int], threads: int, keep_alive: bool, out) -> None:
    """One load process: `threads` connections working through `indices`."""
    work: queue.SimpleQueue = queue.SimpleQueue()
    for index in indices:
        work.put(index)
    for _ in range(threads):
        work.put(None)
    tally = Tally()
    workers = [
        threading.Thread(target=submit_thread, args=(url, keep_alive, work, out, tally)) for _ in range(threads)
    ]
    out.put(("started", time.monotonic()))
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join()
    out.put(
        (
            "done",
            {
                "ended": time.monotonic(),
                "statuses": tally.statuses,
                "errors": tally.errors,
                "examples": tally.examples,
                "latencies": tally.latencies,
                "connections": tally.connections,
            },
        )
    )


class LoadRun:
    """`total` submissions spread over `processes` processes with `concurrency` connections in all.

    With `keep_alive=False` every request opens a connection of its own, as many separate
    clients would: each may land on any gunicorn worker, where a kept-alive one stays with
    the worker that accepted it.
    """

    def __init__(self, url: str, total: int, concurrency: int, processes: int = 2, keep_alive: bool = True):
        processes = max(1, min(processes, concurrency))
        # spawn: a fresh interpreter, not a fork of the test process and its open sockets.
        context = multiprocessing.get_context("spawn")
        self._out = context.Queue()
        self._pending = processes
        self._done: list[dict] = []
        self._ready: list[tuple[int, str]] = []
        # Measured by the load processes (CLOCK_MONOTONIC is system-wide): from the first
        # request to the last response, without the time a spawned interpreter takes to start.
        self._started = float("inf")
        self._ended = 0.0
        self._processes = []
        for number in range(processes):
            threads = concurrency // processes + (1 if number < concurrency % processes else 0)
            process = context.Process(
                target=submit_process,
                args=(url, list(range(number, total, processes)), threads, keep_alive, self._out),
                name=f"loadgen-{number}",
                daemon=True,
            )
            process.start()
            self._processes.append(process)

    def __enter__(self) -> LoadRun:
        return self

    def __exit__(self, *exc_info) -> None:
        self.stop()

    def _receive(self, timeout: float | None = None) -> None:
        """Read what the load processes sent, waiting up to `timeout` for the first message."""
        block = timeout is not None
        while self._pending:
            try:
                kind, payload = self._out.get(timeout=timeout) if block else self._out.get_nowait()
            except queue.Empty:
                return
            block = False
            if kind == "started":
                self._started = min(self._started, payload)
            elif kind == "accepted":
                self._ready.extend(payload)
            else:
                # A process's ids all come before its "done": a queue keeps each sender's order.
                self._done.append(payload)
                self._ended = max(self._ended, payload["ended"])
                self._pending -= 1

    def accepted(self) -> list[tuple[int, str]]:
        """(index, task id) of the submissions accepted since the last call."""
        self._receive()
        ready, self._ready = self._ready, []
        return ready

    def finished(self) -> bool:
        self._receive()
        if self._pending and not any(process.is_alive() for process in self._processes):
            self._receive(timeout=1.0)
            if self._pending:
                raise RuntimeError(f"{self._pending} load process(es) died without reporting")
        return not self._pending

    def wait(self, timeout: float) -> None:
        """Block until every process has reported, or raise TimeoutError."""
        deadline = time.monotonic() + timeout
        while not self.finished():
            if time.monotonic() > deadline:
                raise TimeoutError(f"the load did not finish within {timeout:.0f} s")
            self._receive(timeout=0.5)

    def stop(self) -> None:
        for process in self._processes:
            if process.is_alive():
                process.kill()
        for process in self._processes:
            process.join(5)

    def report(self) -> LoadReport:
        assert not self._pending, "report() before the load finished"
        statuses: Counter[int] = Counter()
        errors: Counter[str] = Counter()
        examples: list[str] = []
        latencies: list[float] = []
        for done in self._done:
            statuses.update(done["statuses"])
            errors.update(done["errors"])
            examples.extend(done["examples"])
            latencies.extend(done["latencies"])
        return LoadReport(
            submitted=sum(statuses.values()) + sum(errors.values()) - errors["bad 202 body"],
            statuses=statuses,
            errors=errors,
            error_examples=examples[:EXAMPLES],
            connections_opened=sum(done["connections"] for done in self._done),
            latencies=latencies,
            seconds=self._ended - self._started,
        )
