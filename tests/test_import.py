"""Importing any module of the package opens no connection and starts nothing."""

import subprocess
import sys

from tests.helpers import PROJECT_ROOT, service_env

# Any socket connect or new thread during import is a failure.
PROBE = """
import socket, threading
def refuse(*args, **kwargs):
    raise SystemExit("a connection was opened at import time: %r" % (args,))
socket.socket.connect = refuse
socket.socket.connect_ex = refuse
import importlib, pkgutil, backend
for module in pkgutil.walk_packages(backend.__path__, "backend."):
    if module.name != "backend.worker":
        importlib.import_module(module.name)
import backend.worker  # the worker entry point builds the app: still no connection
import sys
assert len([name for name in sys.modules if name.startswith("backend.")]) >= 30, "too few modules imported"
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
