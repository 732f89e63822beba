"""Log format of the API and the workers (LOG_FORMAT): text for people, or one JSON
object per line for log shippers, with request_id, task_id and task_name where known.

The API's logging is configured by gunicorn (`logconfig_dict` in gunicorn.conf.py)
or run.py with `logging_config()`; the worker's by Celery, whose handlers
`configure_worker_logging()` re-formats once Celery has set them up.
"""

from __future__ import annotations

import logging
from typing import Any

from celery import current_task
from celery.signals import after_setup_logger, after_setup_task_logger, celeryd_init
from pythonjsonlogger.json import JsonFormatter

from backend.ops.tracing import current_request_id

TEXT_FORMAT = "[%(asctime)s] [%(process)d] [%(levelname)s] %(name)s: %(message)s"
JSON_FIELDS = ("levelname", "name", "process", "processName", "message")
# "pid" tells gunicorn's forked workers apart (all are "MainProcess"), "process" Celery's pool.
JSON_RENAMED = {"levelname": "level", "process": "pid", "processName": "process"}


class ContextFilter(logging.Filter):
    """Adds request_id, task_id and task_name to a record where known; drops nothing."""

    def filter(self, record: logging.LogRecord) -> bool:
        fields = record.__dict__
        if current_task and current_task.request.id is not None:
            fields.setdefault("task_id", current_task.request.id)
            fields.setdefault("task_name", current_task.name)
        elif isinstance(data := fields.get("data"), dict) and "id" in data:
            # Celery's "Task ... received" line, logged before any task runs, names it in `data`.
            fields.setdefault("task_id", data["id"])
            fields.setdefault("task_name", data.get("name"))
        request_id = current_request_id()
        if request_id:
            fields.setdefault("request_id", request_id)
        return True


class WithRequestId(logging.Formatter):
    """A text formatter's line, with `request_id=<id>` at the end of its first line when known."""

    def __init__(self, inner: logging.Formatter):
        super().__init__()
        self.inner = inner

    def format(self, record: logging.LogRecord) -> str:
        text = self.inner.format(record)
        request_id = getattr(record, "request_id", None)
        if not request_id:
            return text
        first, newline, rest = text.partition("\n")
        return f"{first} request_id={request_id}{newline}{rest}"


def json_formatter() -> JsonFormatter:
    return JsonFormatter(JSON_FIELDS, rename_fields=JSON_RENAMED, timestamp="time")


def text_formatter() -> logging.Formatter:
    return WithRequestId(logging.Formatter(TEXT_FORMAT))


class AccessJsonFormatter(JsonFormatter):
    """gunicorn's access lines as fields. gunicorn logs them outside the Flask request,
    with the request's atoms as the record's args: the id comes from the response header."""

    def add_fields(self, log_data: dict[str, Any], record: logging.LogRecord, message_dict: dict[str, Any]) -> None:
        super().add_fields(log_data, record, message_dict)
        atoms = record.args if isinstance(record.args, dict) else {}
        fields = {
            "method": atoms.get("m"),
            "path": atoms.get("U"),
            "status": int(atoms["s"]) if str(atoms.get("s", "")).isdigit() else atoms.get("s"),
            "duration_ms": round(atoms["D"] / 1000, 3) if isinstance(atoms.get("D"), int) else None,
            "bytes": atoms.get("B"),
            "remote_addr": atoms.get("h"),
            "request_id": atoms.get("{x-request-id}o"),
        }
        log_data.update((key, value) for key, value in fields.items() if value is not None)


def access_json_formatter() -> AccessJsonFormatter:
    return AccessJsonFormatter(
        ("levelname", "name", "process", "message"), rename_fields=JSON_RENAMED, timestamp="time"
    )


def logging_config(log_format: str, level: str = "INFO", access_log: str | None = "-") -> dict[str, Any]:
    """A dictConfig for the API process: gunicorn's loggers, the app's, and the root logger.

    `access_log` is gunicorn's `accesslog`: "-" for stdout, a file path, or None for none.
    """
    json_lines = log_format == "json"
    handlers: dict[str, Any] = {
        "console": {
            "class": "logging.StreamHandler",
            "stream": "ext://sys.stderr",
            "formatter": "default",
            "filters": ["context"],
        },
    }
    if access_log == "-":
        handlers["access"] = {"class": "logging.StreamHandler", "stream": "ext://sys.stdout", "formatter": "access"}
    elif access_log:
        handlers["access"] = {"class": "logging.FileHandler", "filename": access_log, "formatter": "access"}
    return {
        "version": 1,
        "disable_existing_loggers": False,
        "filters": {"context": {"()": ContextFilter}},
        "formatters": {
            "default": {"()": json_formatter if json_lines else text_formatter},
            # gunicorn formats its access line itself (access_log_format) in the message.
            "access": {"()": access_json_formatter} if json_lines else {"format": "%(message)s"},
        },
        "handlers": handlers,
        "root": {"level": level, "handlers": ["console"]},
        "loggers": {
            "gunicorn.error": {"level": level, "handlers": ["console"], "propagate": False},
            "gunicorn.access": {
                "level": "INFO",
                "handlers": ["access"] if "access" in handlers else [],
                "propagate": False,
            },
        },
    }


def configure_worker_logging(log_format: str) -> None:
    """Hook into Celery's logging setup (worker and beat): add the context fields to
    its handlers and, for LOG_FORMAT=json, switch them to JSON lines."""
    json_lines = log_format == "json"

    def reformat(logger: logging.Logger, **_: Any) -> None:
        for handler in logger.handlers:
            if not any(isinstance(f, ContextFilter) for f in handler.filters):
                handler.addFilter(ContextFilter())
            if json_lines:
                handler.setFormatter(json_formatter())
            elif not isinstance(handler.formatter, WithRequestId):
                handler.setFormatter(WithRequestId(handler.formatter or logging.Formatter()))

    def no_banner(instance: Any, **_: Any) -> None:
        # Celery prints its startup banner straight to stdout, not through logging:
        # it would break one-JSON-object-per-line. "celery@... ready." is still logged.
        instance.quiet = True

    after_setup_logger.connect(reformat, weak=False, dispatch_uid="backend.ops.logs.root")
    after_setup_task_logger.connect(reformat, weak=False, dispatch_uid="backend.ops.logs.task")
    if json_lines:
        celeryd_init.connect(no_banner, weak=False, dispatch_uid="backend.ops.logs.banner")
