#!/usr/bin/env bash
# Start celery beat, which sends the periodic tasks of config.py's beat_schedule
# (HEARTBEAT_INTERVAL). Run exactly ONE beat per deployment: each beat sends the
# whole schedule, so two would send every periodic task twice. Settings from the environment:
#   CELERY_LOGLEVEL             debug | info | warning | error (default: info)
#   CELERY_BEAT_SCHEDULE_FILE   beat's state, the last run of each entry
#                               (default: var/beat/celerybeat-schedule)
# plus everything config.py reads (REDIS_URL, BROKER_URL, APP_ENV, HEARTBEAT_INTERVAL, ...).
set -euo pipefail
cd "$(dirname "$0")"
# Use the project's virtualenv (made by `make run` / `make test`) when there is one.
if [[ -x .venv/bin/celery ]]; then PATH="$PWD/.venv/bin:$PATH"; fi

# Runtime state lives under var/ (git-ignored), not in the project root.
schedule_file="${CELERY_BEAT_SCHEDULE_FILE:-var/beat/celerybeat-schedule}"
mkdir -p "$(dirname "$schedule_file")"

args=(
  --app backend.worker
  beat
  --loglevel "${CELERY_LOGLEVEL:-info}"
  --schedule "$schedule_file"
  # Answer `celery inspect ping -d celerybeat@<host>` while the schedule loop
  # ticks: a health check. /readyz knows this name and counts no beat as a worker.
  --enable-remote-control
  --hostname "celerybeat@%h"
)

# exec: beat becomes this process, so SIGTERM from a supervisor reaches it.
exec celery "${args[@]}" "$@"
