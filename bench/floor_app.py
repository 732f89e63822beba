"""The floor of any web layer: gunicorn serving nothing but the product's `apply_async`.

    gunicorn --config gunicorn.conf.py 'bench.floor_app:create_app()'

A bare WSGI callable, no Flask: no routing, no validation, no hooks, no JSON
provider. Every POST publishes the product's `noop` exactly as the API does
(our Celery app, task record and all) and answers 202 with the task id. The bench
serves it with the API's own gunicorn.conf.py, beside the API, so in one run:

- this rate ÷ raw `apply_async` is what gunicorn and HTTP alone cost: the
  ceiling of the HTTP submit ratio for any WSGI framework on this machine;
- the API's HTTP submit rate ÷ this rate is what our Flask layer costs.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable


def create_app() -> Callable[[dict, Callable], Iterable[bytes]]:
    import bench.tasks  # noqa: F401  (registers noop)
    from backend import create_app as create_api
    from backend.jobs import extensions
    from bench.app import apply_candidate_settings

    celery = extensions.celery_app(create_api())
    apply_candidate_settings(celery)
    noop = celery.tasks["noop"]

    def submit_noop(environ: dict, start_response: Callable) -> Iterable[bytes]:
        if environ["REQUEST_METHOD"] != "POST":  # any GET: alive (the bench waits for a 200)
            status, body = "200 OK", b'{"status": "ok"}'
        else:
            environ["wsgi.input"].read()  # the client's body, unread, would stay in the connection
            status, body = "202 Accepted", json.dumps({"task_id": noop.apply_async().id}).encode()
        start_response(status, [("Content-Type", "application/json"), ("Content-Length", str(len(body)))])
        return [body]

    return submit_noop
