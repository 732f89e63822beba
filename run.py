"""The Flask development server for the API alone (no worker, no Redis started).

    python run.py              # http://127.0.0.1:5000, debug off
    FLASK_DEBUG=1 python run.py

For the whole stack use `make run`; in production use gunicorn (docs/operations.md).
"""

import logging.config
import sys

from backend import create_app
from backend.ops.logs import logging_config
from config import ConfigError


def main() -> None:
    try:
        app = create_app()
    except ConfigError as error:
        sys.exit(f"configuration error: {error}")
    # The API's log format (LOG_FORMAT), as under gunicorn; werkzeug's request lines included.
    logging.config.dictConfig(logging_config(app.config["LOG_FORMAT"], access_log=None))
    app.run(
        host=app.config["FLASK_RUN_HOST"],
        port=app.config["FLASK_RUN_PORT"],
        debug=app.config["DEBUG"],
    )


if __name__ == "__main__":
    main()
