"""gunicorn settings for the API (gunicorn reads this file from the working directory):

    gunicorn --config gunicorn.conf.py 'backend:create_app()'

Every value comes from config.py, as the app's own settings do, `.env` included:
the API and gunicorn cannot disagree on GUNICORN_THREADS, which also sizes
MAX_WAITING_REQUESTS and the broker pool.
"""

import sys

from config import ConfigError, load_config

try:
    settings = load_config()
except ConfigError as error:
    # SystemExit, not a traceback: gunicorn would print this file's stack for an exception.
    sys.exit(f"configuration error: {error}")

bind = settings.GUNICORN_BIND
workers = settings.GUNICORN_WORKERS
# gthread: a pool of threads per worker process. Requests are short Redis round trips,
# and an open event stream or long-poll is a thread blocked in poll(), costing memory
# but no CPU. gevent, the usual choice for long-lived connections, took as much or more
# CPU per request in make bench and would have to monkey-patch Celery, kombu and
# redis-py before they load (docs/performance.md).
worker_class = "gthread"
# Each open stream (GET /status/<id>/events) or long-poll holds one thread for its life,
# so workers x threads bounds them (a dashboard tab holds up to 2). 16 rather than 4:
# room for streams beside ordinary requests. The price is paid under saturation, when
# more threads contend for the GIL (docs/performance.md measures both). An API that
# serves no streams or long-polls can set GUNICORN_THREADS=4.
threads = settings.GUNICORN_THREADS
timeout = settings.GUNICORN_TIMEOUT
graceful_timeout = settings.GUNICORN_GRACEFUL_TIMEOUT
accesslog = settings.GUNICORN_ACCESSLOG
errorlog = "-"
loglevel = settings.GUNICORN_LOGLEVEL
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
logconfig_dict = logging_config(settings.LOG_FORMAT, loglevel.upper(), accesslog)


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
