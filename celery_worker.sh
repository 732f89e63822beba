#!/usr/bin/env bash
# Start a Celery worker for the job service. Settings come from the environment:
#   CELERY_CONCURRENCY  pool processes (default: number of CPUs)
#   CELERY_QUEUES       comma-separated queues to consume (default: celery)
#   CELERY_LOGLEVEL     debug | info | warning | error (default: info)
#   CELERY_HOSTNAME     worker name, unique per worker (default: worker@<host>)
#   CELERY_PREFETCH_MULTIPLIER  messages reserved per pool process (default 1, for long
#                       tasks); a worker of short tasks only may take 4 (see README)
# plus everything config.py reads (REDIS_URL, BROKER_URL, RESULT_BACKEND, APP_ENV, ...).
set -euo pipefail
cd "$(dirname "$0")"
# Use the project's virtualenv (made by `make run` / `make test`) when there is one.
if [[ -x .venv/bin/celery ]]; then PATH="$PWD/.venv/bin:$PATH"; fi

args=(
  --app backend.worker
  worker
  --loglevel "${CELERY_LOGLEVEL:-info}"
  --queues "${CELERY_QUEUES:-celery}"
  --hostname "${CELERY_HOSTNAME:-worker@%h}"
  # Mingle asks the other workers for their revoked ids at startup and waits 1 s for
  # replies (first ping 2.0 s -> 1.0 s after start without it, another worker up). The API's
  # cancel is the task record's flag, not a revoke; only a revoke sent from Flower or
  # `celery control` goes unlearned by a worker that starts after it. Gossip
  # follows every other worker's events: nothing uses it, and once a Flower turns events
  # on, N workers would each process the heartbeats of all the others.
  --without-mingle
  --without-gossip
)
if [[ -n "${CELERY_CONCURRENCY:-}" ]]; then
  args+=(--concurrency "$CELERY_CONCURRENCY")
fi
if [[ -n "${CELERY_PREFETCH_MULTIPLIER:-}" ]]; then
  args+=(--prefetch-multiplier "$CELERY_PREFETCH_MULTIPLIER")
fi

# SIGTERM (docker stop, systemd, Kubernetes) starts Celery's soft shutdown:
# running tasks get WORKER_SOFT_SHUTDOWN_TIMEOUT seconds to finish, then go back
# on the queue. Without this, SIGTERM waits for every task, however long.
export REMAP_SIGTERM="${REMAP_SIGTERM:-SIGQUIT}"

# exec: the worker becomes this process, so SIGTERM from a supervisor reaches it.
exec celery "${args[@]}" "$@"
