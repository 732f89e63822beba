"""The worker's entry point: `celery -A backend.worker worker`.

Importing this module builds the app (that is its one job), so the worker runs
tasks with exactly the API's configuration, and logs in its LOG_FORMAT.
"""

from backend import create_app
from backend.jobs import extensions
from backend.ops.logs import configure_worker_logging

flask_app = create_app()
celery_app = extensions.celery_app(flask_app)
configure_worker_logging(flask_app.config["LOG_FORMAT"])
