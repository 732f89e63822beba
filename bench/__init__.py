"""The benchmark harness: `make bench` (or `.venv/bin/python -m bench --help`).

It starts a private Redis, the API under gunicorn and Celery workers of its own,
measures the service against the limits beneath it (Redis, raw Celery) in one run,
prints a table, and writes bench/results/latest.json and latest.png.
"""
