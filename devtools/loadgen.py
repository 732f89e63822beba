"""The HTTP load generator of `make bench` and of the reliability suite's load test.

A few processes, each driving its keep-alive connections from one `selectors` loop over
plain sockets: requests are encoded once, and only the status line and Content-Length of
an answer are parsed. So the client costs little of the CPU it shares with the server it
measures, and no client GIL caps the rate. Each connection has one request in flight
(HTTP/1.1, no pipelining): `connections` is the concurrency.

Two ways to send the requests, on one clock (CLOCK_MONOTONIC is system-wide):

- Round and round for a window (the bench): a warm-up (connections opened, server threads
  and pools warmed), then the measured seconds. Only answers to requests sent and answered
  inside the window count. Split in go() and result(), so the caller can sample the
  server (CPU, memory) at the window's edges:

      run = LoadRun("http://127.0.0.1:5000", [Request("GET", "/healthz")])
      start, end = run.go(warmup=1, seconds=5)
      result = run.result()            # result.rate, result.latency_ms(0.99)

- Each request once, as fast as the connections allow (the load test). A request that
  fails is counted, never retried: it may have reached the server, and a retry could
  submit twice. The bodies of answers with status `keep_status` come back while the load
  runs, with the index of their request:

      with LoadRun(url, requests, connections=32, each_once=True, keep_status=202) as run:
          run.go()
          while not run.finished():
              new = run.answers()      # [(index in requests, body), ...] since the last call
          result = run.result()        # result.seconds: first request to last answer

With `keep_alive=False` every request opens a connection of its own, as many separate
clients would: each may land on any gunicorn worker, where a kept-alive one stays with the
worker that accepted it.

Standard library only: the load processes start fast and import nothing of the app.
"""

from __future__ import annotations

import itertools
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

# Far above any healthy latency: a request unanswered this long is counted as an error
# ("timeout") and its connection replaced, so a stuck server never hangs the run.
REQUEST_TIMEOUT_S = 30.0
# Examples of unexpected answers and errors, per load process.
EXAMPLES = 10
# Kept bodies are sent to the caller in batches: a queue message per body would cost more than the request.
BATCH = 100


@dataclass(frozen=True)
class Request:
    method: str
    path: str
    body: bytes | None = None

    def encode(self, host: str, keep_alive: bool = True) -> bytes:
        connection = "keep-alive" if keep_alive else "close"
        head = f"{self.method} {self.path} HTTP/1.1\r\nHost: {host}\r\nConnection: {connection}\r\n"
        if self.body is not None:
            head += f"Content-Type: application/json\r\nContent-Length: {len(self.body)}\r\n"
        return (head + "\r\n").encode("ascii") + (self.body or b"")


@dataclass
class LoadResult:
    """What all load processes saw: inside the window, or of every request sent once."""

    seconds: float
    processes: int
    connections: int
    responses: int = 0
    statuses: Counter = field(default_factory=Counter)
    errors: Counter = field(default_factory=Counter)  # no answer: kind -> count
    examples: list[str] = field(default_factory=list)  # of answers >= 300 and of errors
    latencies: list[float] = field(default_factory=list)  # seconds, request sent to answer read
    client_cpu_s: float = 0.0
    connections_opened: int = 0

    @property
    def rate(self) -> float:
        return self.responses / self.seconds if self.seconds > 0 else 0.0

    @property
    def sent(self) -> int:
        """Requests that were answered or failed."""
        return self.responses + sum(self.errors.values())

    @property
    def server_errors(self) -> int:
        return sum(count for status, count in self.statuses.items() if status >= 500)

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
        self.index: int | None = None  # of the request in flight
        self.sent_at = 0.0

    def open(self) -> socket.socket:
        self.sock = socket.create_connection(self.address, timeout=REQUEST_TIMEOUT_S)
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.buffer.clear()
        return self.sock

    def close(self) -> None:
        if self.sock is not None:
            self.sock.close()
            self.sock = None

    def send(self, index: int, payload: bytes) -> None:
        self.index = index
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


def _load_process(url, work, repeat, connections, keep_alive, keep_status, go, window, out) -> None:
    """One load process: `connections` connections working through `work`, [(index, Request)],
    round and round if `repeat`, else each once."""
    parts = urlsplit(url)
    address = (parts.hostname, parts.port or 80)
    payloads = [(index, request.encode(parts.netloc, keep_alive)) for index, request in work]
    source = itertools.cycle(payloads) if repeat else iter(payloads)
    out.put(("ready", os.getpid()))
    go.wait()
    start, end = window[0], window[1]
    statuses: Counter = Counter()
    errors: Counter = Counter()
    examples: list[str] = []
    latencies: list[float] = []
    kept: list[tuple[int, bytes]] = []
    first_sent, last_answer = math.inf, 0.0
    opened = in_flight = 0
    selector = selectors.DefaultSelector()

    def close(connection: _Connection) -> None:
        if connection.sock is not None:
            try:
                selector.unregister(connection.sock)
            except KeyError:  # opened, but failed before it was registered
                pass
            connection.close()

    def failed(connection: _Connection, kind: str, what: str, counts: bool = True) -> None:
        """The request in flight on `connection` got no answer: counted, not retried."""
        nonlocal in_flight
        in_flight -= 1
        if counts:
            errors[kind] += 1
            if len(examples) < EXAMPLES:
                examples.append(f"request {connection.index}: {what}")
        connection.index = None
        close(connection)

    def send_next(connection: _Connection) -> None:
        """The next request on `connection` (opened if need be); closed once there is none."""
        nonlocal in_flight, opened, first_sent
        for index, payload in source:
            in_flight += 1
            connection.index = index
            try:
                if connection.sock is None:
                    opened += 1
                    selector.register(connection.open(), selectors.EVENT_READ, connection)
                connection.send(index, payload)
            except OSError as exc:
                failed(connection, type(exc).__name__, repr(exc))
                if time.monotonic() >= end:
                    return
                continue
            if connection.sent_at >= start:
                first_sent = min(first_sent, connection.sent_at)
            return
        close(connection)

    pool = [_Connection(address) for _ in range(connections)]
    for connection in pool:
        send_next(connection)
    cpu_start = None
    next_timeout_check = time.monotonic() + 1.0
    while in_flight:
        now = time.monotonic()
        if cpu_start is None and now >= start:
            cpu_start = time.process_time()
        if now >= end:
            break
        if now >= next_timeout_check:
            next_timeout_check = now + 1.0
            for connection in pool:
                if connection.index is not None and now - connection.sent_at > REQUEST_TIMEOUT_S:
                    failed(connection, "timeout", f"no answer within {REQUEST_TIMEOUT_S:g} s",
                           connection.sent_at >= start)
                    send_next(connection)
        for key, _ in selector.select(timeout=min(0.05, end - now)):
            connection: _Connection = key.data
            try:
                data = connection.sock.recv(65536)
            except OSError as exc:
                failed(connection, type(exc).__name__, repr(exc))
                send_next(connection)
                continue
            if not data:
                # Closed by the server (e.g. an idle keep-alive timed out): that request is lost.
                failed(connection, "closed by server", "connection closed by the server", connection.sent_at >= start)
                send_next(connection)
                continue
            connection.buffer += data
            answer = connection.response()
            if answer is None:
                continue
            done = time.monotonic()
            status, body, closes = answer
            in_flight -= 1
            if connection.sent_at >= start and done <= end:
                statuses[status] += 1
                latencies.append(done - connection.sent_at)
                last_answer = done
                if status >= 300 and len(examples) < EXAMPLES:
                    examples.append(f"request {connection.index}: {status} {body[:200]!r}")
                if status == keep_status:
                    kept.append((connection.index, body))
                    if len(kept) >= BATCH:
                        out.put(("answers", kept))
                        kept = []
            connection.index = None
            if closes or not keep_alive:
                close(connection)
            send_next(connection)
    cpu_end = time.process_time()
    for connection in pool:
        connection.close()
    if kept:
        out.put(("answers", kept))
    out.put(
        (
            "done",
            {
                "statuses": statuses,
                "errors": errors,
                "examples": examples,
                "latencies": latencies,
                "cpu": cpu_end - cpu_start if cpu_start is not None else 0.0,
                "opened": opened,
                "first_sent": first_sent,
                "last_answer": last_answer,
            },
        )
    )


class LoadRun:
    """`requests` from `processes` processes over `connections` connections in all; go()
    starts them, result() collects (see the module's docstring)."""

    def __init__(
        self, url: str, requests: list[Request], processes: int = 2, connections: int = 16, *,
        each_once: bool = False, keep_alive: bool = True, keep_status: int | None = None,
    ):
        if not requests:
            raise ValueError("no requests to send")
        self.processes = max(1, min(processes, connections))
        self.connections = connections
        self.each_once = each_once
        # spawn: a fresh interpreter, not a fork of the caller and its open sockets.
        context = multiprocessing.get_context("spawn")
        self._out = context.Queue()
        self._go = context.Event()
        self._window = context.Array("d", 2)
        self._pending = self.processes
        self._done: list[dict] = []
        self._answers: list[tuple[int, bytes]] = []
        self._children = []
        indexed = list(enumerate(requests))
        for number in range(self.processes):
            share = connections // self.processes + (1 if number < connections % self.processes else 0)
            if each_once:
                work = indexed[number :: self.processes]
            else:
                offset = number * len(requests) // self.processes
                work = indexed[offset:] + indexed[:offset]
            child = context.Process(
                target=_load_process,
                args=(url, work, not each_once, share, keep_alive, keep_status, self._go, self._window, self._out),
                name=f"loadgen-{number}",
                daemon=True,
            )
            child.start()
            self._children.append(child)
        self.pids = [self._get("ready") for _ in self._children]
        self.start = self.end = 0.0

    def __enter__(self) -> LoadRun:
        return self

    def __exit__(self, *exc_info) -> None:
        self.stop()

    def _get(self, kind: str, timeout: float = 60.0):
        got, payload = self._out.get(timeout=timeout)
        if got != kind:
            raise RuntimeError(f"load process sent {got!r}, expected {kind!r}")
        return payload

    def go(self, warmup: float = 0.0, seconds: float = math.inf) -> tuple[float, float]:
        """Start sending: warm up for `warmup` s from now, then count for `seconds`.
        Each request once: no warm-up, counted until every request is answered."""
        self.start = time.monotonic() + warmup
        self.end = self.start + seconds
        self._window[0], self._window[1] = self.start, self.end
        self._go.set()
        return self.start, self.end

    def _receive(self, timeout: float | None = None) -> None:
        """Read what the load processes sent, waiting up to `timeout` for the first message."""
        block = timeout is not None
        while self._pending:
            try:
                kind, payload = self._out.get(timeout=timeout) if block else self._out.get_nowait()
            except queue.Empty:
                return
            block = False
            if kind == "answers":
                self._answers.extend(payload)
            else:
                # A process's answers all come before its "done": a queue keeps each sender's order.
                self._done.append(payload)
                self._pending -= 1

    def answers(self) -> list[tuple[int, bytes]]:
        """(index in requests, body) of the answers with status `keep_status` since the last call."""
        self._receive()
        answers, self._answers = self._answers, []
        return answers

    def finished(self) -> bool:
        self._receive()
        if self._pending and not any(child.is_alive() for child in self._children):
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

    def result(self) -> LoadResult:
        """Once every process has reported (a window: soon after its end)."""
        try:
            self.wait(max(0.0, self.end - time.monotonic()) + REQUEST_TIMEOUT_S + 10)
        except TimeoutError:
            raise RuntimeError("a load process did not report in time") from None
        finally:
            self.stop()
        if self.each_once:
            first = min(done["first_sent"] for done in self._done)
            last = max(done["last_answer"] for done in self._done)
            seconds = max(0.0, last - first)
        else:
            seconds = self.end - self.start
        result = LoadResult(seconds, self.processes, self.connections)
        for done in self._done:
            result.statuses.update(done["statuses"])
            result.errors.update(done["errors"])
            result.examples.extend(done["examples"])
            result.latencies.extend(done["latencies"])
            result.client_cpu_s += done["cpu"]
            result.connections_opened += done["opened"]
        result.responses = sum(result.statuses.values())
        return result

    def stop(self) -> None:
        """End the load processes: at once if they have not all reported."""
        if self._pending:
            for child in self._children:
                if child.is_alive():
                    child.kill()
        join_or_kill(self._children, 5)


def run_load(
    url: str, requests: list[Request], *, processes: int = 2, connections: int = 16,
    warmup: float = 1.0, seconds: float = 5.0,
) -> LoadResult:
    run = LoadRun(url, requests, processes, connections)
    run.go(warmup, seconds)
    return run.result()
