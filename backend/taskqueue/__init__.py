"""Celery on Redis: how jobs travel and run.

`make_celery` binds Celery to the Flask app, the task base class ties every run
to its job record, and the Redis transport, result backend, consumer, visibility
leases and internal periodic tasks tune stock Celery and kombu for this service.

Imported by: both processes. The API publishes through the transport and reads the
result backend; the consumer and the leases run only in a worker's main process.
"""
