"""gunicorn settings for the API, from the environment (gunicorn reads this file
from the working directory): gunicorn --config gunicorn.conf.py 'backend:create_app()'"""

import multiprocessing
import os

bind = os.environ.get("GUNICORN_BIND", "127.0.0.1:5000")
workers = int(os.environ.get("GUNICORN_WORKERS", min(4, multiprocessing.cpu_count())))
# Threads let one worker overlap Redis round trips; requests are short I/O waits.
worker_class = "gthread"
threads = int(os.environ.get("GUNICORN_THREADS", "4"))
# No request should take long: Redis calls time out in seconds. A stuck worker is killed.
timeout = int(os.environ.get("GUNICORN_TIMEOUT", "30"))
graceful_timeout = int(os.environ.get("GUNICORN_GRACEFUL_TIMEOUT", "10"))
accesslog = os.environ.get("GUNICORN_ACCESSLOG", "-")
errorlog = "-"
loglevel = os.environ.get("GUNICORN_LOGLEVEL", "info")
# gunicorn 27's control socket defaults to one path per user (~/.gunicorn/gunicorn.ctl),
# shared by every instance on the machine; we do not use it, so two stacks never clash.
control_socket_disable = True

# --- Logs and metrics (backend/logs.py, backend/metrics.py) ---
from backend import prometheus_dir  # noqa: E402
from backend.logs import logging_config  # noqa: E402
from config import read_environment  # noqa: E402

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
