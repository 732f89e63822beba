#!/usr/bin/env bash
# Start a Celery worker for the job service. Settings come from the environment
# (and .env), read and validated by config.py like every other process's:
#   CELERY_CONCURRENCY  pool processes (default: number of CPUs)
#   CELERY_QUEUES       comma-separated queues to consume (default: celery)
#   CELERY_LOGLEVEL     debug | info | warning | error (default: info)
#   CELERY_HOSTNAME     worker name, unique per worker (default: worker@<host>)
#   CELERY_PREFETCH_MULTIPLIER  messages reserved per pool process (default 1, for long
#                       tasks); a worker of short tasks only may take 4 (docs/performance.md)
# plus everything else config.py reads (REDIS_URL, BROKER_URL, RESULT_BACKEND, APP_ENV, ...).
# Extra arguments go to `celery worker` as they are.
set -euo pipefail
cd "$(dirname "$0")"
# Use the project's virtualenv (made by `make run` / `make test`) when there is one.
if [[ -x .venv/bin/celery ]]; then PATH="$PWD/.venv/bin:$PATH"; fi

# One argument per line; a bad setting stops here with a message naming it.
# (`python` is the venv's here, the image's in a container: config.py needs the project's packages.)
command_line=$(python config.py worker)
args=()
while IFS= read -r argument; do args+=("$argument"); done <<<"$command_line"

# SIGTERM (docker stop, systemd, Kubernetes) starts Celery's soft shutdown:
# running tasks get WORKER_SOFT_SHUTDOWN_TIMEOUT seconds to finish, then go back
# on the queue. Without this, SIGTERM waits for every task, however long.
export REMAP_SIGTERM="${REMAP_SIGTERM:-SIGQUIT}"

# exec: the worker becomes this process, so SIGTERM from a supervisor reaches it.
exec celery "${args[@]}" "$@"
