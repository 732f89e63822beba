"""The directory of Prometheus' multiprocess mode, for gunicorn's master (gunicorn.conf.py).

Every gunicorn worker writes its samples to files there, and /metrics sums them.
It must be set before a worker imports prometheus_client, and must start empty:
files left by an earlier run would be added to this run's counters.
Importing this module imports nothing from prometheus_client (see prepare()).
"""

from __future__ import annotations

import os
import shutil
import sys
import tempfile
from pathlib import Path

ENV = "PROMETHEUS_MULTIPROC_DIR"
_created: list[str] = []


def prepare() -> str:
    """Empty PROMETHEUS_MULTIPROC_DIR of old samples, or create a private one and set it."""
    values = sys.modules.get("prometheus_client.values")
    if values is not None and values.ValueClass is values.MutexValue:
        # prometheus_client picks its storage when first imported (e.g. by preload_app):
        # each worker would count alone, and /metrics would show one worker's share.
        raise RuntimeError(f"prometheus_client was imported before {ENV} was set: set it in the environment")
    path = os.environ.get(ENV)
    if path:
        Path(path).mkdir(parents=True, exist_ok=True)
        for stale in Path(path).glob("*.db"):
            stale.unlink()
    else:
        path = tempfile.mkdtemp(prefix="prometheus-multiproc-")
        _created.append(path)
        # Inherited by the workers gunicorn forks from here on.
        os.environ[ENV] = path
    return path


def worker_exited(pid: int) -> None:
    """Drop a dead worker's live gauges (counters and histograms keep their totals)."""
    from prometheus_client import multiprocess

    multiprocess.mark_process_dead(pid)


def cleanup() -> None:
    """Remove the directory prepare() created (one an operator set is left in place)."""
    while _created:
        shutil.rmtree(_created.pop(), ignore_errors=True)
