"""A multi-process, keep-alive HTTP load generator, cheap on the client's CPU.

The benchmark shares its cores with the server it measures, so the client must cost
as little as possible per request: each load process drives its connections from
one `selectors` loop over plain sockets, sends pre-encoded requests and parses only
the status line and Content-Length. Each connection has one request in flight
(HTTP/1.1 keep-alive, no pipelining), so `processes × connections` is the concurrency.

Every process works for the same window of the system-wide monotonic clock: a
warm-up (connections opened, server threads and pools warmed), then the measured
seconds. Only responses to requests sent and answered inside the window count.

    result = run_load("http://127.0.0.1:5000", [Request("GET", "/healthz")], seconds=5)
    result.rate, result.latency_ms(0.5)

Standard library only: the load processes start fast and import nothing of the app.
"""

from __future__ import annotations

import math
import multiprocessing
import os
import queue
import selectors
import socket
import time
from collections import Counter
from dataclasses import dataclass, field
from urllib.parse import urlsplit

from devtools.processes import join_or_kill

# Far above any healthy latency; a process that hears nothing this long reports it.
STALL_TIMEOUT_S = 30.0
EXAMPLES = 5


@dataclass(frozen=True)
class Request:
    method: str
    path: str
    body: bytes | None = None

    def encode(self, host: str) -> bytes:
        head = f"{self.method} {self.path} HTTP/1.1\r\nHost: {host}\r\nConnection: keep-alive\r\n"
        if self.body is not None:
            head += f"Content-Type: application/json\r\nContent-Length: {len(self.body)}\r\n"
        return (head + "\r\n").encode("ascii") + (self.body or b"")


@dataclass
class LoadResult:
    """What all load processes saw inside the measured window."""

    seconds: float
    processes: int
    connections: int
    responses: int = 0
    statuses: Counter = field(default_factory=Counter)
    errors: Counter = field(default_factory=Counter)
    examples: list[str] = field(default_factory=list)
    latencies: list[float] = field(default_factory=list)
    client_cpu_s: float = 0.0

    @property
    def rate(self) -> float:
        return self.responses / self.seconds if self.seconds > 0 else 0.0

    def unexpected(self, expected_status: int) -> int:
        return self.responses - self.statuses[expected_status] + sum(self.errors.values())

    def latency_ms(self, fraction: float) -> float:
        return percentile(self.latencies, fraction) * 1000.0


def percentile(values: list[float], fraction: float) -> float:
    """Nearest-rank percentile (p99 of 100 values is the 99th smallest); NaN when empty."""
    if not values:
        return math.nan
    ordered = sorted(values)
    return ordered[max(1, math.ceil(fraction * len(ordered))) - 1]


class _Connection:
    def __init__(self, address: tuple[str, int]):
        self.address = address
        self.sock: socket.socket | None = None
        self.buffer = bytearray()
        self.sent_at = 0.0

    def open(self) -> socket.socket:
        self.sock = socket.create_connection(self.address, timeout=STALL_TIMEOUT_S)
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.buffer.clear()
        return self.sock

    def close(self) -> None:
        if self.sock is not None:
            self.sock.close()
            self.sock = None

    def send(self, payload: bytes) -> None:
        self.sent_at = time.monotonic()
        assert self.sock is not None
        self.sock.sendall(payload)

    def response(self) -> tuple[int, bytes, bool] | None:
        """(status, body, server closes) once a whole response is buffered, else None."""
        end = self.buffer.find(b"\r\n\r\n")
        if end < 0:
            return None
        head = bytes(self.buffer[:end]).lower()
        status = int(head[9:12])
        length = 0
        at = head.find(b"\r\ncontent-length:")
        if at >= 0:
            stop = head.find(b"\r", at + 2)
            length = int(head[at + 17 : stop if stop >= 0 else len(head)])
        elif b"\r\ntransfer-encoding: chunked" in head:
            raise RuntimeError("chunked responses are not supported by this load generator")
        total = end + 4 + length
        if len(self.buffer) < total:
            return None
        body = bytes(self.buffer[end + 4 : total])
        del self.buffer[:total]
        return status, body, b"\r\nconnection: close" in head


def _load_process(url, requests, offset, connections, go, window, out) -> None:
    """One load process: `connections` connections cycling through `requests` from `offset`."""
    parts = urlsplit(url)
    address = (parts.hostname, parts.port or 80)
    payloads = [request.encode(parts.netloc) for request in requests]
    out.put(("ready", os.getpid()))
    go.wait()
    start, end = window[0], window[1]
    statuses: Counter = Counter()
    errors: Counter = Counter()
    examples: list[str] = []
    latencies: list[float] = []
    selector = selectors.DefaultSelector()
    next_index = offset

    def send_next(connection: _Connection) -> None:
        nonlocal next_index
        if connection.sock is None:
            selector.register(connection.open(), selectors.EVENT_READ, connection)
        connection.send(payloads[next_index % len(payloads)])
        next_index += 1

    def reopen(connection: _Connection) -> None:
        if connection.sock is not None:
            selector.unregister(connection.sock)
            connection.close()
        send_next(connection)

    pool = [_Connection(address) for _ in range(connections)]
    for connection in pool:
        send_next(connection)
    cpu_start = None
    last_progress = time.monotonic()
    while True:
        now = time.monotonic()
        if cpu_start is None and now >= start:
            cpu_start = time.process_time()
        if now >= end:
            break
        if now - last_progress > STALL_TIMEOUT_S:
            errors["stalled"] += 1
            break
        for key, _ in selector.select(timeout=min(0.05, end - now)):
            connection: _Connection = key.data
            try:
                data = connection.sock.recv(65536)
            except OSError as exc:
                errors[type(exc).__name__] += 1
                reopen(connection)
                continue
            if not data:
                # Closed by the server (e.g. an idle keep-alive timed out): that request is lost.
                if connection.sent_at >= start:
                    errors["closed by server"] += 1
                reopen(connection)
                continue
            connection.buffer += data
            answer = connection.response()
            if answer is None:
                continue
            done = time.monotonic()
            last_progress = done
            status, body, closes = answer
            if connection.sent_at >= start and done <= end:
                statuses[status] += 1
                latencies.append(done - connection.sent_at)
                if status >= 300 and len(examples) < EXAMPLES:
                    examples.append(f"{status} {body[:200]!r}")
            if closes:
                reopen(connection)
            else:
                send_next(connection)
    cpu_end = time.process_time()
    for connection in pool:
        connection.close()
    out.put(
        (
            "done",
            {
                "statuses": statuses,
                "errors": errors,
                "examples": examples,
                "latencies": latencies,
                "cpu": cpu_end - cpu_start if cpu_start is not None else 0.0,
            },
        )
    )


class LoadRun:
    """Start the load processes, then `go()` opens the window; `result()` collects.

    Split in two so the caller can sample the server (CPU, memory) at the window's edges.
    """

    def __init__(self, url: str, requests: list[Request], processes: int = 2, connections: int = 16):
        if not requests:
            raise ValueError("no requests to send")
        self.processes = max(1, min(processes, connections))
        self.connections = connections
        context = multiprocessing.get_context("spawn")
        self._out = context.Queue()
        self._go = context.Event()
        self._window = context.Array("d", 2)
        self._children = []
        for number in range(self.processes):
            share = connections // self.processes + (1 if number < connections % self.processes else 0)
            offset = number * len(requests) // self.processes
            child = context.Process(
                target=_load_process,
                args=(url, requests, offset, share, self._go, self._window, self._out),
                name=f"loadgen-{number}",
                daemon=True,
            )
            child.start()
            self._children.append(child)
        self.pids = [self._get("ready") for _ in self._children]
        self.start = self.end = 0.0

    def _get(self, kind: str, timeout: float = 60.0):
        got, payload = self._out.get(timeout=timeout)
        if got != kind:
            raise RuntimeError(f"load process sent {got!r}, expected {kind!r}")
        return payload

    def go(self, warmup: float, seconds: float) -> tuple[float, float]:
        """Open the window: warm up for `warmup` s from now, then measure for `seconds`."""
        self.start = time.monotonic() + warmup
        self.end = self.start + seconds
        self._window[0], self._window[1] = self.start, self.end
        self._go.set()
        return self.start, self.end

    def result(self) -> LoadResult:
        result = LoadResult(self.end - self.start, self.processes, self.connections)
        try:
            for _ in self._children:
                done = self._get("done", timeout=self.end - time.monotonic() + STALL_TIMEOUT_S + 10)
                result.statuses.update(done["statuses"])
                result.errors.update(done["errors"])
                result.examples.extend(done["examples"])
                result.latencies.extend(done["latencies"])
                result.client_cpu_s += done["cpu"]
        except queue.Empty:
            raise RuntimeError("a load process did not report in time") from None
        finally:
            self.stop()
        result.responses = sum(result.statuses.values())
        return result

    def stop(self) -> None:
        join_or_kill(self._children, 5)


def run_load(
    url: str, requests: list[Request], *, processes: int = 2, connections: int = 16,
    warmup: float = 1.0, seconds: float = 5.0,
) -> LoadResult:
    run = LoadRun(url, requests, processes, connections)
    run.go(warmup, seconds)
    return run.result()
