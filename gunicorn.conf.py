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
