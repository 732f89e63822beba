#!/usr/bin/env bash
# Start celery beat, which sends the periodic tasks of config.py's beat_schedule
# (HEARTBEAT_INTERVAL). Run exactly ONE beat per deployment: each beat sends the
# whole schedule, so two would send every periodic task twice. Settings come from
# the environment (and .env), read and validated by config.py:
#   CELERY_LOGLEVEL             debug | info | warning | error (default: info)
#   CELERY_BEAT_SCHEDULE_FILE   beat's state, the last run of each entry
#                               (default: var/beat/celerybeat-schedule)
# plus everything else config.py reads (REDIS_URL, BROKER_URL, APP_ENV, HEARTBEAT_INTERVAL, ...).
set -euo pipefail
cd "$(dirname "$0")"
# Use the project's virtualenv (made by `make run` / `make test`) when there is one.
if [[ -x .venv/bin/celery ]]; then PATH="$PWD/.venv/bin:$PATH"; fi

# One argument per line (config.py also creates the schedule file's directory);
# a bad setting stops here with a message naming it.
# (`python` is the venv's here, the image's in a container: config.py needs the project's packages.)
command_line=$(python config.py beat)
args=()
while IFS= read -r argument; do args+=("$argument"); done <<<"$command_line"
# exec: beat becomes this process, so SIGTERM from a supervisor reaches it.
exec celery "${args[@]}" "$@"
