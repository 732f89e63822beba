"""The measurements, one function each. run.py calls them in order on one stack.

Rates are taken over a fixed window after a warm-up; CPU is sampled at the window's
edges for every process that takes part (API, Redis, workers, the client), so each
rate comes with where its CPU went. Latencies are taken one request at a time.
"""

from __future__ import annotations

import http.client
import json
import math
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from urllib.parse import urlsplit

import psutil
import redis

from backend.jobs.states import FINAL_STATES, SUCCESS
from bench.publishers import Publishers, TreePublishers
from bench.stack import API_DB, DEFAULTS_DB, HOLD_QUEUE, BenchError, BenchStack, Service, cpu_seconds, rss_mb
from config import DEFAULT_QUEUE
from devtools.loadgen import LoadResult, LoadRun, Request, percentile
from devtools.processes import wait_until

QUEUE = DEFAULT_QUEUE
NOOP_SUBMIT = Request("POST", "/tasks/noop", b"{}")
# Each long-poll asks for at most this long; the task ends far sooner.
LONG_POLL_S = 10
# Without long-poll (an API that predates it), the status is polled this often.
POLL_INTERVAL_S = 0.005
LPUSH_PAYLOAD = b"x" * 1024


@dataclass(frozen=True)
class Settings:
    seconds: float
    warmup: float
    repeat: int
    latency_samples: int
    latency_warmup: int
    worker_tasks: int
    http_processes: int
    http_connections: int


def summary_ms(seconds: list[float]) -> dict[str, float]:
    ms = [value * 1000.0 for value in seconds]
    return {
        "p50": percentile(ms, 0.50), "p90": percentile(ms, 0.90), "p99": percentile(ms, 0.99),
        "mean": sum(ms) / len(ms) if ms else float("nan"), "n": len(ms),
    }


def sleep_until(moment: float) -> None:
    delay = moment - time.monotonic()
    if delay > 0:
        time.sleep(delay)


def processes_of(pids: list[int]) -> list[psutil.Process]:
    return [psutil.Process(pid) for pid in pids]


class CpuMeter:
    """CPU used by each role, by the benchmark's whole process tree, and by everything else.

    The machine may be shared: "other" is the CPU the system spent on processes that are
    not the benchmark's (another test run, a build), "steal" what the hypervisor took.
    Both are reported with every rate, so a figure measured on a busy machine shows it.
    """

    def __init__(self, roles: Mapping[str, list[psutil.Process]]):
        self.roles = roles
        self.tree = bench_tree()
        self._started = 0.0
        self._before: dict[str, float] = {}

    def _sample(self) -> dict[str, float]:
        sample = {role: cpu_seconds(processes) for role, processes in self.roles.items()}
        busy, steal = system_cpu()
        sample.update(_tree=cpu_seconds(self.tree), _busy=busy, _steal=steal)
        return sample

    def start(self, probe: bool = True) -> None:
        """`probe`: time the CPU speed probe first (call it while the benchmark's own load is idle)."""
        self._speed = cpu_speed_ms() if probe else math.nan
        self._started = time.monotonic()
        self._before = self._sample()

    def stop(self, probe: bool = True) -> dict[str, float]:
        """CPU seconds per role since start(), plus `other_cores` and `steal_cores` (average cores)
        and the CPU speed probe before and after (`probe_ms`)."""
        seconds = time.monotonic() - self._started
        used = {key: value - self._before[key] for key, value in self._sample().items()}
        result = {role: used[role] for role in self.roles}
        result["other_cores"] = max(used["_busy"] - used["_tree"], 0.0) / seconds
        result["steal_cores"] = used["_steal"] / seconds
        result["probe_ms"] = (self._speed, cpu_speed_ms() if probe else math.nan)
        return result


def bench_tree() -> list[psutil.Process]:
    """This process and every process it started (the stack's services, load, publishers)."""
    me = psutil.Process()
    return [me, *me.children(recursive=True)]


def system_cpu() -> tuple[float, float]:
    """Busy and stolen CPU seconds of the whole machine so far."""
    times = psutil.cpu_times()
    busy = times.user + times.nice + times.system + getattr(times, "irq", 0.0) + getattr(times, "softirq", 0.0)
    return busy, getattr(times, "steal", 0.0)


def other_load(seconds: float = 2.0) -> float:
    """Cores the machine spends on processes other than the benchmark's, over `seconds`."""
    meter = CpuMeter({})
    meter.start(probe=False)
    time.sleep(seconds)
    return meter.stop(probe=False)["other_cores"]


def window_cpu(start: float, end: float, roles: Mapping[str, list[psutil.Process]]) -> dict[str, float]:
    """CPU seconds each role used between `start` and `end` (monotonic clock); blocks until `end`.

    No speed probe here: the load is running. Callers probe before go() and after the result."""
    sleep_until(start)
    meter = CpuMeter(roles)
    meter.start(probe=False)
    sleep_until(end)
    return meter.stop(probe=False)


def cpu_speed_ms(rounds: int = 5) -> float:
    """Best time of a fixed pure-Python loop: how fast this CPU was during the run.

    A shared or virtual machine's speed drifts from hour to hour (neighbours, frequency);
    comparing runs, compare this too. Ratios inside one run are immune to it.
    """
    best = float("inf")
    for _ in range(rounds):
        began = time.perf_counter()
        total = 0
        for number in range(200_000):
            total += number % 7
        best = min(best, time.perf_counter() - began)
    return best * 1000.0


def per_op_ms(cpu: Mapping[str, float], operations: int) -> dict[str, float]:
    return {
        role: 1000.0 * seconds / operations if operations else float("nan")
        for role, seconds in cpu.items() if not role.endswith(("_cores", "_ms"))
    }


def load_of(cpu: Mapping) -> dict:
    return {"other_cores": cpu["other_cores"], "steal_cores": cpu["steal_cores"], "probe_ms": cpu["probe_ms"]}


def clear_tasks(client: redis.Redis) -> None:
    """Drop queued messages, records and results; keep kombu's bindings (`_kombu.*`), which
    the API declared once and would not declare again (messages would go nowhere)."""
    batch = [key for key in client.scan_iter(count=1000) if not key.startswith(b"_kombu.")]
    for at in range(0, len(batch), 1000):
        client.unlink(*batch[at : at + 1000])
    # UNLINK frees a big queue in a Redis background thread: let it finish before the next
    # measurement, or that measurement shares the CPU with it.
    wait_until(lambda: not client.info("memory").get("lazyfree_pending_objects"), 30,
               what="Redis to free the deleted keys", interval=0.05)


# --- Redis ---------------------------------------------------------------------------------


def redis_lpush(url: str, settings: Settings) -> dict:
    """A redis-py LPUSH loop on one connection: the ceiling under every publish."""
    client = redis.Redis.from_url(url)
    key = "bench:lpush"
    client.delete(key)
    start = time.monotonic() + settings.warmup
    end = start + settings.seconds
    while time.monotonic() < start:
        client.lpush(key, LPUSH_PAYLOAD)
    meter = CpuMeter({})
    meter.start()
    latencies = []
    while True:
        began = time.perf_counter()
        client.lpush(key, LPUSH_PAYLOAD)
        latencies.append(time.perf_counter() - began)
        if time.monotonic() > end:
            break
    load = load_of(meter.stop())
    client.delete(key)
    client.close()
    return {"per_s": (len(latencies) - 1) / settings.seconds, "rtt_ms": summary_ms(latencies),
            "payload_bytes": len(LPUSH_PAYLOAD), "machine_load": load}


# --- submits -------------------------------------------------------------------------------


def apply_async_rate(stack: BenchStack, processes: int, settings: Settings, root: Path | None = None) -> dict:
    """Raw `noop.apply_async()` with our configuration from `processes` processes, no HTTP;
    with `root`, the publishers of the source tree there (bench/baseline.py)."""
    publishers = (TreePublishers(root, stack.env(API_DB, root=root), processes) if root is not None
                  else Publishers("ours", stack.env(API_DB), processes))
    probe_before = cpu_speed_ms()
    start, end = publishers.go(settings.warmup, settings.seconds)
    cpu = window_cpu(start, end, {
        "publishers": processes_of(publishers.pids),
        "redis": processes_of([stack.redis.pid]),
    })
    result = publishers.result()
    cpu["probe_ms"] = (probe_before, cpu_speed_ms())
    return {"per_s": result.rate, "processes": processes, "ops": result.published,
            "cpu_ms_per_op": per_op_ms(cpu, result.published), "machine_load": load_of(cpu)}


def http_rate(
    stack: BenchStack, requests: list[Request], expected_status: int, settings: Settings, api: Service | None = None,
) -> dict:
    """A keep-alive load of `requests` against the API (or another gunicorn of the stack, `api`);
    the rate of `expected_status` answers."""
    api = api or stack.api
    run = LoadRun(api.url, requests, settings.http_processes, settings.http_connections)
    probe_before = cpu_speed_ms()
    start, end = run.go(settings.warmup, settings.seconds)
    cpu = window_cpu(start, end, {
        "api": api.processes(),
        "redis": processes_of([stack.redis.pid]),
        "client": processes_of(run.pids),
    })
    result: LoadResult = run.result()
    cpu["probe_ms"] = (probe_before, cpu_speed_ms())
    unexpected = result.unexpected(expected_status)
    if unexpected:
        raise BenchError(
            f"{unexpected} of {result.responses} responses were not {expected_status} "
            f"(statuses {dict(result.statuses)}, errors {dict(result.errors)}): {result.examples}"
        )
    return {
        "per_s": result.rate, "ops": result.responses,
        "latency_ms": summary_ms(result.latencies),
        "cpu_ms_per_op": per_op_ms(cpu, result.responses),
        "machine_load": load_of(cpu),
        "client_cpu_self_reported_ms_per_op": 1000.0 * result.client_cpu_s / max(result.responses, 1),
    }


def http_submit_rate(stack: BenchStack, settings: Settings, api: Service | None = None) -> dict:
    """POST /tasks/noop through the API, or through bench/floor_app.py's bare WSGI callable."""
    return http_rate(stack, [NOOP_SUBMIT], 202, settings, api)


def status_rate(stack: BenchStack, task_ids: list[str], settings: Settings) -> dict:
    return http_rate(stack, [Request("GET", f"/status/{task_id}") for task_id in task_ids], 200, settings)


# --- end to end ----------------------------------------------------------------------------


def supports_long_poll(api_url: str) -> bool:
    """Whether GET /status/<id> takes `?wait=` (from the API's own OpenAPI document)."""
    document = json.loads(_get(api_url, "/openapi.json"))
    for path, operations in document.get("paths", {}).items():
        if path.startswith("/status/") and path.count("/") == 2:
            parameters = operations.get("get", {}).get("parameters", [])
            return any(parameter.get("name") == "wait" for parameter in parameters)
    return False


def _get(api_url: str, path: str) -> bytes:
    parts = urlsplit(api_url)
    connection = http.client.HTTPConnection(parts.hostname, parts.port, timeout=10)
    try:
        connection.request("GET", path)
        return connection.getresponse().read()
    finally:
        connection.close()


class HttpClient:
    """One keep-alive connection, one request at a time: latency without queueing."""

    def __init__(self, api_url: str, long_poll: bool):
        parts = urlsplit(api_url)
        self.connection = http.client.HTTPConnection(parts.hostname, parts.port, timeout=30)
        self.long_poll = long_poll

    def call(self, method: str, path: str, body: bytes | None = None) -> tuple[int, dict]:
        headers = {"Content-Type": "application/json"} if body is not None else {}
        self.connection.request(method, path, body, headers)
        response = self.connection.getresponse()
        return response.status, json.loads(response.read())

    def round_trip(self) -> tuple[float, str, int]:
        """Submit a noop and follow it to its end: (seconds, task id, status requests made)."""
        began = time.perf_counter()
        status, body = self.call(NOOP_SUBMIT.method, NOOP_SUBMIT.path, NOOP_SUBMIT.body)
        if status != 202:
            raise BenchError(f"submit answered {status}: {body}")
        task_id = body["task_id"]
        query = f"?wait={LONG_POLL_S}" if self.long_poll else ""
        polls = 0
        while True:
            status, body = self.call("GET", f"/status/{task_id}{query}")
            polls += 1
            if status != 200:
                raise BenchError(f"status answered {status}: {body}")
            if body["state"] in FINAL_STATES:
                break
            if not self.long_poll:
                time.sleep(POLL_INTERVAL_S)
        elapsed = time.perf_counter() - began
        if body["state"] != SUCCESS:
            raise BenchError(f"task {task_id} ended {body['state']}: {body}")
        return elapsed, task_id, polls

    def close(self) -> None:
        self.connection.close()


def end_to_end(api_url: str, noop, settings: Settings, long_poll: bool) -> tuple[dict, dict, list[str]]:
    """Latency of a noop over HTTP (submit, then status until it ended) and of Celery's own
    round trip (`apply_async().get()`), one at a time, interleaved so both see the same machine."""
    client = HttpClient(api_url, long_poll)
    http_s, raw_s, polls, ids = [], [], [], []

    def raw_round_trip() -> float:
        began = time.perf_counter()
        result = noop.apply_async()
        result.get(timeout=30)
        elapsed = time.perf_counter() - began
        ids.append(result.id)
        return elapsed

    meter = CpuMeter({})
    try:
        for number in range(settings.latency_warmup + settings.latency_samples):
            if number == settings.latency_warmup:
                meter.start()
            keep = number >= settings.latency_warmup
            # Alternate which goes first, so neither always runs right after the other.
            order = ("http", "raw") if number % 2 else ("raw", "http")
            for kind in order:
                if kind == "http":
                    elapsed, task_id, made = client.round_trip()
                    ids.append(task_id)
                    if keep:
                        http_s.append(elapsed)
                        polls.append(made)
                else:
                    elapsed = raw_round_trip()
                    if keep:
                        raw_s.append(elapsed)
    finally:
        client.close()
    load = load_of(meter.stop())
    http_summary = summary_ms(http_s)
    http_summary["machine_load"] = load
    http_summary["status_requests_per_task"] = sum(polls) / len(polls)
    http_summary["method"] = "long-poll ?wait=" if long_poll else f"poll every {POLL_INTERVAL_S * 1000:g} ms"
    http_summary["samples_s"] = http_s
    raw_summary = summary_ms(raw_s)
    raw_summary["samples_s"] = raw_s
    raw_summary["machine_load"] = load
    return http_summary, raw_summary, ids


# --- workers -------------------------------------------------------------------------------


@dataclass
class WorkerRun:
    result: dict
    service: Service
    hostname: str


def idle_worker(stack: BenchStack, kind: str, control_app, root: Path | None = None) -> tuple[Service, str]:
    """A worker of `kind` (see worker_throughput) started on the hold queue, once it answers a ping."""

    def ping(hostname: str):
        return control_app.control.ping(destination=[hostname], timeout=0.5)

    return stack.start_worker(kind, ping, root)


def consume(control_app, hostname: str) -> None:
    """Point a worker started by idle_worker() at the real queue."""
    control_app.control.add_consumer(QUEUE, destination=[hostname], reply=True, timeout=5)
    control_app.control.cancel_consumer(HOLD_QUEUE, destination=[hostname], reply=True, timeout=5)


def worker_throughput(
    stack: BenchStack, kind: str, control_app, fill: Callable[[int], list[str]], settings: Settings,
    root: Path | None = None,
) -> WorkerRun:
    """Tasks/s of a worker draining `worker_tasks` noops, which `fill(count)` queues (their ids).

    The worker starts on an empty hold queue (booted, idle), the noops are queued, then
    it is pointed at them. The rate is taken from the tasks' own `date_done`, skipping
    the first tenth (warm-up), so neither start-up nor polling counts. `kind`: "defaults"
    (Celery's, bench/defaults_app.py), else our worker, of the source tree at `root` if given.
    """
    db = DEFAULTS_DB if kind == "defaults" else API_DB
    client = redis.Redis.from_url(stack.url(db))
    clear_tasks(client)
    service, hostname = idle_worker(stack, kind, control_app, root)
    ids = fill(settings.worker_tasks)
    if client.llen(QUEUE) < len(ids):
        raise BenchError(f"{kind}: {client.llen(QUEUE)} messages queued, {len(ids)} published")
    meter = CpuMeter({"worker": service.processes(), "redis": processes_of([stack.redis.pid])})
    meter.start()
    consume(control_app, hostname)
    keys = [f"celery-task-meta-{task_id}" for task_id in ids]
    metas: list[bytes | None] = []

    def drained() -> bool:
        nonlocal metas
        service.check_alive()
        if client.llen(QUEUE):
            return False
        metas = [meta for at in range(0, len(keys), 1000) for meta in client.mget(keys[at : at + 1000])]
        return all(metas)

    wait_until(drained, timeout=60 + len(ids) / 5, what=f"the {kind} worker to run {len(ids)} tasks", interval=0.25)
    cpu = meter.stop()
    decoded = [json.loads(meta) for meta in metas]
    failed = [meta for meta in decoded if meta["status"] != SUCCESS]
    if failed:
        raise BenchError(f"{kind}: {len(failed)} tasks did not succeed, e.g. {failed[0]}")
    done = sorted(datetime.fromisoformat(meta["date_done"]).timestamp() for meta in decoded)
    skip = max(1, len(done) // 10)
    span = done[-1] - done[skip]
    client.close()
    return WorkerRun(
        {
            "per_s": (len(done) - 1 - skip) / span if span > 0 else float("nan"),
            "tasks": len(done), "measured_tasks": len(done) - 1 - skip, "seconds": span,
            "cpu_ms_per_task": per_op_ms(cpu, len(done)),
            "machine_load": load_of(cpu),
            "rss_mb": rss_mb(service.processes()),
        },
        service, hostname,
    )


def rss_of(processes: list[psutil.Process]) -> dict:
    sizes = rss_mb(processes)
    return {"total": sum(sizes), "processes": sizes}


def clear_db(stack: BenchStack, db: int) -> Callable[[], None]:
    client = redis.Redis.from_url(stack.url(db))
    return lambda: clear_tasks(client)
