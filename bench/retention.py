"""Redis memory per retained finished job, measured with real jobs.

`add` jobs are submitted over HTTP to the API (gunicorn), our worker runs them to SUCCESS,
then what Redis holds for them is read:

    per job = (Δ used_memory − Δ client buffers − Δ append-only buffer) ÷ jobs

between the emptied database (queues, records, results and index gone; kombu's bindings
kept) and the moment every job is SUCCESS in the index and the queue is empty. So it
counts the record, the result, the index entry and their share of Redis' key and expiry
tables, as they grow. MEMORY USAGE of a sample of records and results, and of the index
set divided by its entries, splits the figure; the rest is the tables' share.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable

import redis

from backend.api.auth import ANONYMOUS
from backend.jobs import states
from backend.jobs.index import index_key, task_index_key
from backend.jobs.records import KEY_PREFIX
from bench.seed import RESULT_PREFIX
from bench.stack import BenchError, server_name
from config import DEFAULT_QUEUE
from devtools.loadgen import LoadRun, Request
from devtools.processes import wait_until

TASK = "add"
# Records and results whose MEMORY USAGE splits the figure.
SAMPLE = 200
# Readings this close are the same: a client's query buffer alone moves used_memory by kilobytes.
SETTLED_BYTES = 8192
# Issue 12's target for a small finished job: record, result and index entry.
TARGET_BYTES = 1024.0


def memory(client: redis.Redis) -> dict[str, int]:
    info = client.info("memory")
    return {key: int(info.get(key, 0)) for key in ("used_memory", "mem_clients_normal", "mem_aof_buffer")}


def settled_memory(client: redis.Redis, timeout: float = 5.0) -> dict[str, int]:
    """used_memory once two readings half a second apart agree within SETTLED_BYTES (rehashing
    and lazy frees done), or the last reading after `timeout`."""
    deadline = time.monotonic() + timeout
    last = memory(client)
    while time.monotonic() < deadline:
        time.sleep(0.5)
        now = memory(client)
        if abs(now["used_memory"] - last["used_memory"]) <= SETTLED_BYTES:
            return now
        last = now
    return last


def measure(client: redis.Redis, api_url: str, jobs: int, clear: Callable[[], None],
            log: Callable[[str], None]) -> dict:
    """Submit `jobs` add jobs to the API at `api_url` (a worker consumes them) and read Redis."""
    clear()
    before = settled_memory(client)
    keys_before = client.dbsize()
    bodies = [json.dumps({"x": number, "y": round(number * 0.37, 2)}).encode() for number in range(jobs)]
    log(f"Redis memory per retained job: {jobs:,} add jobs over HTTP, run to SUCCESS by our worker")
    with LoadRun(api_url, [Request("POST", f"/tasks/{TASK}", body) for body in bodies], processes=1,
                 connections=8, each_once=True) as run:
        run.go()
        run.wait(60 + jobs / 20)
        result = run.result()
    if result.unexpected(202):
        raise BenchError(f"memory phase: {result.unexpected(202)} of {jobs} submits were not 202: {result.examples}")
    finished = index_key(states.SUCCESS, TASK, ANONYMOUS)
    wait_until(lambda: client.zcard(finished) >= jobs and not client.llen(DEFAULT_QUEUE), 60 + jobs / 20,
               what=f"the job index to list {jobs} add jobs SUCCESS", interval=0.25)
    after = settled_memory(client)
    delta = {key: after[key] - before[key] for key in after}
    retained = delta["used_memory"] - delta["mem_clients_normal"] - delta["mem_aof_buffer"]
    ids = [job_id.decode() for job_id in client.zrange(finished, 0, SAMPLE - 1)]
    pipe = client.pipeline(transaction=False)
    for job_id in ids:
        pipe.memory_usage(KEY_PREFIX + job_id, samples=0)
        pipe.memory_usage(RESULT_PREFIX + job_id, samples=0)
    usages = pipe.execute()
    record_bytes = sum(usages[0::2]) / len(ids)
    result_bytes = sum(usages[1::2]) / len(ids)
    # Two entries per job: its set by owner and its set by task (backend/jobs/index.py).
    index_bytes = sum(
        (client.memory_usage(key, samples=0) or 0) / client.zcard(key)
        for key in (finished, task_index_key(states.SUCCESS, TASK))
    )
    example = ids[0]
    record = {key.decode(): value.decode() for key, value in client.hgetall(KEY_PREFIX + example).items()}
    meta = json.loads(client.get(RESULT_PREFIX + example) or b"{}")
    server = client.info("server")
    memory_info = client.info("memory")
    per_job = retained / jobs
    return {
        "jobs": jobs,
        "bytes_per_job": per_job,
        "used_memory_delta_bytes": delta["used_memory"],
        "client_buffers_delta_bytes": delta["mem_clients_normal"],
        "aof_buffer_delta_bytes": delta["mem_aof_buffer"],
        "keys_per_job": (client.dbsize() - keys_before) / jobs,
        "record_bytes": record_bytes,
        "result_bytes": result_bytes,
        "index_entry_bytes": index_bytes,
        "tables_bytes": per_job - record_bytes - result_bytes - index_bytes,
        "submit_per_s": result.responses / result.seconds if result.seconds else 0.0,
        "example": {"record_fields": list(record), "meta_keys": list(meta), "record": record, "meta": meta},
        "redis_server": {
            "version": server_name(server),
            "allocator": memory_info.get("mem_allocator"),
            "executable": server.get("executable"),
            "appendonly": "yes (as make run runs it)",
        },
        "target_bytes": TARGET_BYTES,
    }
