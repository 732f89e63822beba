"""Readiness: is Redis answering and taking writes, is a worker answering, is celery beat sending?

Used by GET /readyz and `flask workers`."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import Any, cast

from flask import Flask, current_app

from backend.jobs import extensions
from backend.jobs.errors import REDIS_FULL_MESSAGE
from backend.jobs.timestamps import epoch_iso
from backend.taskqueue.periodic import last_heartbeat
from config import BEAT_NODE_PREFIX

# A heartbeat older than this many intervals is stale: one late or expired beat is no alarm.
FRESH_INTERVALS = 3

# Where init_app keeps this app's WorkerPings.
EXTENSION = "worker_pings"

class WorkerPings:
    """The workers' answer to a ping, shared by one API process's requests for `ttl` s.

    A ping is a broadcast that waits out its whole timeout (READYZ_PING_TIMEOUT) for
    answers, holding a gunicorn thread, and /readyz needs no token: unshared, probes
    from every load balancer (or anyone) would each hold a thread for a second and
    make every worker answer. One request pings; the requests that came while it
    pinged take its answer (or its error), and later ones take its answer for `ttl` s.
    """

    def __init__(self, ttl: float, wait_limit: float) -> None:
        self.ttl = ttl
        self.wait_limit = wait_limit  # for a ping under way; its own timeout bounds it
        self._lock = threading.Lock()
        # (time.monotonic() when it ended, worker names or the ping's error)
        self._answer: tuple[float, list[str] | Exception] | None = None

    def names(self, ping: Callable[[], list[str]]) -> tuple[list[str], float]:
        """The names of the workers that answered, and how many seconds ago."""
        asked = time.monotonic()
        if not self._lock.acquire(timeout=self.wait_limit):
            raise TimeoutError(f"a ping of the workers has been under way for over {self.wait_limit:g} s")
        try:
            if not self._usable(asked):
                try:
                    names = ping()
                except Exception as exc:
                    self._answer = (time.monotonic(), exc)
                else:  # timed when the ping ended: it answers everyone who asked before
                    self._answer = (time.monotonic(), names)
            assert self._answer is not None  # set just above, or usable
            at, answer = self._answer
        finally:
            self._lock.release()
        if isinstance(answer, Exception):
            raise answer
        return answer, time.monotonic() - at

    def _usable(self, asked: float) -> bool:
        if self._answer is None:
            return False
        at, answer = self._answer
        # An error is shared only with the requests that came while its ping ran.
        return at >= (asked if isinstance(answer, Exception) else asked - self.ttl)


def init_app(app: Flask) -> None:
    config = app.config
    # A caller waits at most for one ping under way (its timeout), plus a margin.
    app.extensions[EXTENSION] = WorkerPings(config["READYZ_CACHE_SECONDS"], 2 * config["READYZ_PING_TIMEOUT"] + 1)


def worker_pings() -> WorkerPings:
    """This app's shared ping of the workers (init_app made it)."""
    return cast(WorkerPings, current_app.extensions[EXTENSION])


def _ping_workers() -> list[str]:
    replies = extensions.celery_app().control.ping(timeout=current_app.config["READYZ_PING_TIMEOUT"])
    return sorted(name for reply in replies for name in reply if not name.startswith(BEAT_NODE_PREFIX))


def readiness() -> tuple[bool, dict[str, Any]]:
    """Ready when Redis answers a PING, is below its memory limit, and at least one
    worker answers a ping.

    A full Redis (used memory at maxmemory: noeviction refuses every write) is not
    ready: every submit would be a 503 `redis_full`, although reads still answer.
    The workers are not pinged then: a ping's reply queue is a write Redis refuses.
    The heartbeat is reported, not required: the API serves every request
    without celery beat, and taking every API instance out of the load balancer
    because the one beat stopped would turn a missed schedule into an outage.
    """
    redis_check = redis_readiness()
    workers_check: dict[str, Any] = {"ok": False, "count": 0, "names": []}
    if redis_check["ok"]:
        try:
            names, age = worker_pings().names(_ping_workers)
            workers_check = {"ok": bool(names), "count": len(names), "names": names, "age_seconds": round(age, 1)}
            if not names:
                workers_check["error"] = "no worker answered a ping"
        except Exception as exc:
            workers_check["error"] = f"{type(exc).__name__}: {exc}"
    elif redis_check.get("full"):
        workers_check["error"] = "not checked: Redis is full"
    else:
        workers_check["error"] = "not checked: Redis is unavailable"
    # The heartbeat is a read: a full Redis still answers it.
    answers = redis_check["ok"] or bool(redis_check.get("full"))
    checks = {"redis": redis_check, "workers": workers_check, "heartbeat": heartbeat_check(answers)}
    return redis_check["ok"] and workers_check["ok"], checks


def redis_readiness() -> dict[str, Any]:
    """Redis answers a PING, and its used memory is below maxmemory (0: no limit)."""
    client = extensions.job_records().client
    started = time.perf_counter()
    try:
        client.ping()
        check: dict[str, Any] = {"ok": True, "latency_ms": round((time.perf_counter() - started) * 1000, 2)}
        memory = client.info("memory")
    except Exception as exc:  # any failure means not ready; say which
        return {"ok": False, "error": f"{type(exc).__name__}: {exc}"}
    used, limit = int(memory["used_memory"]), int(memory.get("maxmemory") or 0)
    check.update(used_memory=used, maxmemory=limit)
    if limit and used >= limit:
        check.update(ok=False, full=True, error=REDIS_FULL_MESSAGE)
    return check


def heartbeat_check(redis_ok: bool) -> dict[str, Any]:
    """When celery beat's heartbeat last ran (backend/taskqueue/periodic.py), and whether that is recent."""
    interval = current_app.config["HEARTBEAT_INTERVAL"]
    if not interval:
        return {"ok": True, "schedule": "off"}
    fresh_within = FRESH_INTERVALS * interval
    check: dict[str, Any] = {
        "ok": False, "last_run_at": None, "age_seconds": None, "fresh_within_seconds": fresh_within,
    }
    if not redis_ok:
        return {**check, "error": "not checked: Redis is unavailable"}
    try:
        last = last_heartbeat(extensions.job_records().client)
        if last is None:
            return {**check, "error": "no heartbeat recorded: is celery beat running (one per deployment)?"}
        # The worker's clock against ours: keep the machines' clocks in sync (NTP).
        age = max(0.0, time.time() - float(last["at"]))
        check.update(
            ok=age <= fresh_within,
            last_run_at=epoch_iso(float(last["at"])),
            age_seconds=round(age, 1),
            worker=str(last["hostname"]),
        )
    except Exception as exc:  # Redis errors or a malformed value: report it, never raise
        return {**check, "error": f"{type(exc).__name__}: {exc}"}
    if not check["ok"]:
        check["error"] = "the heartbeat is late: is celery beat running, and a worker free to run it?"
    return check

