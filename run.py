"""The Flask development server for the API alone (no worker, no Redis started).

    python run.py              # http://127.0.0.1:5000, debug off
    FLASK_DEBUG=1 python run.py

For the whole stack use `make run`; in production use gunicorn (see README).
"""

import logging.config
import os

from backend import create_app
from backend.ops.logs import logging_config


def main() -> None:
    app = create_app()
    # The API's log format (LOG_FORMAT), as under gunicorn; werkzeug's request lines included.
    logging.config.dictConfig(logging_config(app.config["LOG_FORMAT"], access_log=None))
    app.run(
        host=os.environ.get("FLASK_RUN_HOST", "127.0.0.1"),
        port=int(os.environ.get("FLASK_RUN_PORT", "5000")),
        debug=app.config["DEBUG"],
    )


if __name__ == "__main__":
    main()
