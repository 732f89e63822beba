#!/usr/bin/env bash
# Start Flower, the Celery monitoring dashboard. Settings from the environment:
#   FLOWER_PORT        default 5555
#   FLOWER_ADDRESS     default 127.0.0.1 (keep it internal; put a proxy in front)
#   FLOWER_BASIC_AUTH  user:password[,user2:password2]; required when APP_ENV=production
set -euo pipefail
cd "$(dirname "$0")"
# Use the project's virtualenv (made by `make run` / `make test`) when there is one.
if [[ -x .venv/bin/celery ]]; then PATH="$PWD/.venv/bin:$PATH"; fi

args=(
  --app backend.worker
  flower
  --port="${FLOWER_PORT:-5555}"
  --address="${FLOWER_ADDRESS:-127.0.0.1}"
)
if [[ -n "${FLOWER_BASIC_AUTH:-}" ]]; then
  args+=(--basic-auth="$FLOWER_BASIC_AUTH")
elif [[ "${APP_ENV:-development}" == "production" ]]; then
  echo "flower.sh: refusing to start in production without FLOWER_BASIC_AUTH=user:password" >&2
  exit 1
fi

exec celery "${args[@]}" "$@"
