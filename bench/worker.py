"""Our worker with candidate Celery settings: `celery -A bench.worker worker`.

The product's worker app (backend.worker), the benchmark's task, then the settings of
BENCH_CELERY_SETTINGS (a JSON object, from `python -m bench --celery NAME=VALUE`)
over the project's. Without candidates the benchmark runs ./celery_worker.sh itself.
"""

import bench.tasks  # noqa: F401  (registers noop)
from backend.worker import celery_app, flask_app  # noqa: F401
from bench.app import apply_candidate_settings

apply_candidate_settings(celery_app)
