"""Client input, parsed and validated the same way whether it came over HTTP or the CLI.

JSON bodies are validated strictly ("5" is not a number); query strings are text by
nature, so they are converted. Anything invalid is a ServiceError naming each field.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from datetime import datetime
from typing import Any, TypeVar

from pydantic import BaseModel, ValidationError

from backend.jobs.errors import ServiceError

# Celery's ids are UUIDs; callers may choose their own, so any short token is a job id.
JOB_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,127}")

Model = TypeVar("Model", bound=BaseModel)


def parse_json(raw: bytes | str) -> Any:
    """JSON text of a submit, parsed as the API does (also `flask jobs submit --json`); 400 when malformed."""
    try:
        return json.loads(raw, parse_float=_json_number)
    except (ValueError, RecursionError) as exc:
        raise ServiceError(400, "malformed_json", f"the body is not valid JSON: {exc}") from None


def _json_number(text: str) -> int | float:
    """A JSON number written with a fraction or exponent; an int when integral (2.0, 1e3).

    JSON has one number type and JSON Schema's "integer" accepts 2.0, so the published
    schema says {"steps": 2.0} is valid, where strict pydantic refuses a float for an int.
    """
    value = float(text)
    return int(value) if value.is_integer() else value


def iso_with_zone(value: Any) -> Any:
    """A pydantic "before" validator of a moment: ISO 8601 text with a zone, as the published
    schemas say; not a number of seconds, which pydantic's lax mode (query strings) would
    take as a Unix time."""
    if value is None or isinstance(value, datetime):
        return value
    try:
        moment = datetime.fromisoformat(value) if isinstance(value, str) else None
    except ValueError:
        moment = None
    if moment is None or moment.tzinfo is None:
        raise ValueError("must be ISO 8601 text with a time zone, such as 2026-11-29T00:00:00Z")
    return moment


def validate_input(model: type[Model], data: Any, *, from_query: bool = False) -> Model:
    """`data` as an instance of `model`; a 422 naming each bad field otherwise.

    A JSON body is validated strictly unless the model says `strict=False` in its config."""
    if not isinstance(data, Mapping):
        raise ServiceError(422, "validation_error", "the request body must be a JSON object")
    try:
        return model.model_validate(dict(data), strict=not from_query and model.model_config.get("strict", True))
    except ValidationError as exc:
        details: list[dict[str, str | None]] = [
            {
                "field": ".".join(str(part) for part in error["loc"]) or None,
                "message": error["msg"],
                "type": error["type"],
            }
            for error in exc.errors(include_url=False, include_context=False, include_input=False)
        ]
        summary = "; ".join(f"{d['field']}: {d['message']}" if d["field"] else str(d["message"]) for d in details)
        raise ServiceError(422, "validation_error", summary, details) from None
