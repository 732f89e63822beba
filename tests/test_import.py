"""Importing the package opens no connection and starts nothing."""

import subprocess
import sys

from tests.processes import PROJECT_ROOT, service_env

# Any socket connect or new thread during import is a failure.
PROBE = """
import socket, threading
def refuse(*args, **kwargs):
    raise SystemExit("a connection was opened at import time: %r" % (args,))
socket.socket.connect = refuse
socket.socket.connect_ex = refuse
import backend, backend.api.routes, backend.tasks, backend.jobs.service, backend.ops.cli
import backend.taskqueue.celery_app, backend.taskqueue.consumer, backend.taskqueue.leases
import backend.worker  # the worker entry point builds the app: still no connection
assert threading.active_count() == 1, threading.enumerate()
print("ok")
"""


def test_importing_backend_opens_no_connection_and_starts_no_thread():
    result = subprocess.run(
        [sys.executable, "-c", PROBE],
        cwd=PROJECT_ROOT,
        env=service_env("redis://127.0.0.1:6399/0"),
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "ok"
