"""Operations: what lets people run the service and see inside it.

Request ids carried from the API into the worker, the log format, Prometheus
metrics, liveness and readiness checks, the clients file of the API's clients, and
the operator CLI (`flask jobs`, `flask workers`, `flask clients`).

Imported by: both processes. Tracing and logs run in both; metrics and health serve the
API's requests, clients the API's authentication and the CLI, cli the Flask CLI (the
worker imports them with create_app, unused).
gunicorn.conf.py imports prometheus_dir and logs into gunicorn's master.
"""
