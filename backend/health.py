"""Liveness and readiness checks."""

from __future__ import annotations

import time
from datetime import datetime, timezone
from typing import Any

from flask import current_app

from backend.periodic import last_heartbeat

# A heartbeat older than this many intervals is stale: one late or expired beat is no alarm.
FRESH_INTERVALS = 3
# celery_beat.sh's node name: beat answers pings (its health check) but runs no task.
BEAT_NODE_PREFIX = "celerybeat@"


def readiness() -> tuple[bool, dict[str, Any]]:
    """Ready when Redis answers a PING and at least one worker answers a ping.

    The heartbeat is reported, not required: the API serves every request
    without celery beat, and taking every API instance out of the load balancer
    because the one beat stopped would turn a missed schedule into an outage.
    """
    redis_check: dict[str, Any] = {"ok": False}
    workers_check: dict[str, Any] = {"ok": False, "count": 0, "names": []}
    started = time.perf_counter()
    try:
        current_app.extensions["task_records"].client.ping()
        redis_check = {"ok": True, "latency_ms": round((time.perf_counter() - started) * 1000, 2)}
    except Exception as exc:  # any failure means not ready; say which
        redis_check["error"] = f"{type(exc).__name__}: {exc}"
    if redis_check["ok"]:
        try:
            replies = current_app.extensions["celery"].control.ping(
                timeout=current_app.config["READYZ_PING_TIMEOUT"]
            )
            names = sorted(name for reply in replies for name in reply if not name.startswith(BEAT_NODE_PREFIX))
            workers_check = {"ok": bool(names), "count": len(names), "names": names}
            if not names:
                workers_check["error"] = "no worker answered a ping"
        except Exception as exc:
            workers_check["error"] = f"{type(exc).__name__}: {exc}"
    else:
        workers_check["error"] = "not checked: Redis is unavailable"
    checks = {"redis": redis_check, "workers": workers_check, "heartbeat": heartbeat_check(redis_check["ok"])}
    return redis_check["ok"] and workers_check["ok"], checks


def heartbeat_check(redis_ok: bool) -> dict[str, Any]:
    """When celery beat's heartbeat last ran (backend/periodic.py), and whether that is recent."""
    interval = current_app.config["HEARTBEAT_INTERVAL"]
    if not interval:
        return {"ok": True, "schedule": "off"}
    fresh_within = FRESH_INTERVALS * interval
    check: dict[str, Any] = {"ok": False, "last_run_at": None, "age_seconds": None, "fresh_within_seconds": fresh_within}
    if not redis_ok:
        return {**check, "error": "not checked: Redis is unavailable"}
    try:
        last = last_heartbeat(current_app.extensions["task_records"].client)
        if last is None:
            return {**check, "error": "no heartbeat recorded: is celery beat running (one per deployment)?"}
        # The worker's clock against ours: keep the machines' clocks in sync (NTP).
        age = max(0.0, time.time() - float(last["at"]))
        check.update(
            ok=age <= fresh_within,
            last_run_at=_iso(float(last["at"])),
            age_seconds=round(age, 1),
            worker=str(last["hostname"]),
        )
    except Exception as exc:  # Redis errors or a malformed value: report it, never raise
        return {**check, "error": f"{type(exc).__name__}: {exc}"}
    if not check["ok"]:
        check["error"] = "the heartbeat is late: is celery beat running, and a worker free to run it?"
    return check


def _iso(epoch_seconds: float) -> str:
    return datetime.fromtimestamp(epoch_seconds, timezone.utc).isoformat(timespec="milliseconds").replace("+00:00", "Z")
