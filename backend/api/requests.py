"""The body of a request, read as the API reads every JSON body."""

from __future__ import annotations

from typing import Any

from flask import request
from werkzeug.exceptions import RequestEntityTooLarge

from backend.jobs.errors import ServiceError
from backend.jobs.inputs import parse_json


def json_body() -> Any:
    """The request's JSON body: {} when there is none, 415 when not JSON, 400 when malformed
    (whitespace alone is not a JSON document), 413 when too big."""
    raw = request.get_data(cache=True)
    limit = request.max_content_length
    if limit is not None and request.content_length is None and len(raw) >= limit:
        # A streamed (chunked) body: werkzeug stops reading at MAX_CONTENT_LENGTH and returns
        # what it read without a 413 (only a further read raises), so a cut body would be parsed.
        raise RequestEntityTooLarge()
    if not raw:
        return {}
    if not request.is_json:
        raise ServiceError(415, "unsupported_media_type", "send the body as JSON with Content-Type: application/json")
    return parse_json(raw)
