"""Operations: what lets people run the service and see inside it.

Request ids carried from the API into the worker, the log format, Prometheus
metrics, liveness and readiness checks, and the operator CLI (`flask jobs`,
`flask workers`).

Imported by: both processes (tracing and logs), the API process (metrics, health),
and the Flask CLI (cli). gunicorn.conf.py imports prometheus_dir and logs.
"""
