"""Liveness and readiness checks."""

from __future__ import annotations

import time
from typing import Any

from flask import current_app


def readiness() -> tuple[bool, dict[str, Any]]:
    """Ready when Redis answers a PING and at least one worker answers a ping."""
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
            names = sorted(name for reply in replies for name in reply)
            workers_check = {"ok": bool(names), "count": len(names), "names": names}
            if not names:
                workers_check["error"] = "no worker answered a ping"
        except Exception as exc:
            workers_check["error"] = f"{type(exc).__name__}: {exc}"
    else:
        workers_check["error"] = "not checked: Redis is unavailable"
    return redis_check["ok"] and workers_check["ok"], {"redis": redis_check, "workers": workers_check}
