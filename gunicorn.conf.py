"""gunicorn settings for the API, from the environment (gunicorn reads this file
from the working directory): gunicorn --config gunicorn.conf.py 'backend:create_app()'"""

import multiprocessing
import os
import sys

from config import DEFAULT_GUNICORN_THREADS, read_environment

bind = os.environ.get("GUNICORN_BIND", "127.0.0.1:5000")
workers = int(os.environ.get("GUNICORN_WORKERS", min(4, multiprocessing.cpu_count())))
# gthread: a pool of threads per worker process. Requests are short Redis round trips,
# and an open event stream or long-poll is a thread blocked in poll(), costing memory
# but no CPU. Measured with make bench (2 cores): gevent, the usual choice for long-lived
# connections, took as much or more CPU per request (status 1.02 vs 0.92-0.98 ms) and
# would have to monkey-patch Celery, kombu and redis-py before they load.
worker_class = "gthread"
# Each open stream (GET /status/<id>/events) or long-poll holds one thread for its life,
# so workers x threads bounds them (a dashboard tab holds up to 2). 16 rather than 4:
# room for streams beside ordinary requests. The price is paid under saturation, when
# more threads contend for the GIL: HTTP submits reached 0.34-0.40x of raw apply_async
# with 16 threads, 0.44-0.45x with 4 (side by side, 2 cores). An API that serves no
# streams or long-polls can set GUNICORN_THREADS=4.
threads = int(os.environ.get("GUNICORN_THREADS") or DEFAULT_GUNICORN_THREADS)
# No request should take long: Redis calls time out in seconds. A stuck worker is killed.
timeout = int(os.environ.get("GUNICORN_TIMEOUT", "30"))
graceful_timeout = int(os.environ.get("GUNICORN_GRACEFUL_TIMEOUT", "10"))
# "-" is stdout; GUNICORN_ACCESSLOG= (empty) turns the access log off (a proxy in front may keep one).
accesslog = os.environ.get("GUNICORN_ACCESSLOG", "-") or None
errorlog = "-"
loglevel = os.environ.get("GUNICORN_LOGLEVEL", "info")
# gunicorn 27's control socket defaults to one path per user (~/.gunicorn/gunicorn.ctl),
# shared by every instance on the machine; we do not use it, so two stacks never clash.
control_socket_disable = True

# --- Logs and metrics (backend/ops/logs.py, backend/ops/metrics.py) ---
# The project's packages this file imports, directly or not: see post_fork.
PROJECT_PACKAGES = {"config", "backend"}
from backend.ops import prometheus_dir  # noqa: E402
from backend.ops.logs import logging_config  # noqa: E402

# gunicorn's default access line, plus the request id the API answered with.
access_log_format = '%(h)s %(l)s %(u)s %(t)s "%(r)s" %(s)s %(b)s "%(f)s" "%(a)s" %({x-request-id}o)s'
# LOG_FORMAT=json: every line of gunicorn and the app one JSON object; text otherwise.
logconfig_dict = logging_config(
    (read_environment().get("LOG_FORMAT") or "text").strip().lower(), loglevel.upper(), accesslog or None
)


def on_starting(server):
    # Before any worker exists: each one writes its samples there, /metrics sums them.
    prometheus_dir.prepare()


def child_exit(server, worker):
    prometheus_dir.worker_exited(worker.pid)


def on_exit(server):
    prometheus_dir.cleanup()


def post_fork(server, worker):
    # This file imported project modules into the master (config, backend.ops.logs and what
    # they import), and a forked worker inherits them. After `kill -HUP`, a deploy without
    # a restart, the master still holds the old code: drop it, so the worker imports the
    # deployed code when it loads the app. (The master's own hooks and log formatting keep
    # the old code until a restart.) With preload_app the master loaded the app itself, and
    # its objects must keep their modules: gunicorn then reloads no code on HUP anyway.
    if server.cfg.preload_app:
        return
    # By name, not by path: a release directory behind a symlink, or a virtualenv inside the
    # project, would make a path test drop too little or too much (libraries).
    for name in [name for name in sys.modules if name.split(".")[0] in PROJECT_PACKAGES]:
        del sys.modules[name]
