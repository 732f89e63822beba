#!/usr/bin/env bash
# Start Flower, the Celery monitoring dashboard. Settings come from the environment
# (and .env), read and validated by config.py like every other process's:
#   FLOWER_PORT        default 5555
#   FLOWER_ADDRESS     default 127.0.0.1 (keep it internal; put a proxy in front)
#   FLOWER_BASIC_AUTH  user:password[,user2:password2]; required when APP_ENV=production
set -euo pipefail
cd "$(dirname "$0")"
# Use the project's virtualenv (made by `make run` / `make test`) when there is one.
if [[ -x .venv/bin/celery ]]; then PATH="$PWD/.venv/bin:$PATH"; fi

# One argument per line; production without FLOWER_BASIC_AUTH (or any bad setting) stops here.
# (`python` is the venv's here, the image's in a container: config.py needs the project's packages.)
command_line=$(python config.py flower)
args=()
while IFS= read -r argument; do args+=("$argument"); done <<<"$command_line"

exec celery "${args[@]}" "$@"
