"""The JSON text of the API's models: written by pydantic's own serializer, which costs a
fraction of dumping to dicts and then json.dumps (a page of fifty statuses: about a third).

Text pydantic cannot write as UTF-8, a lone surrogate, reaches a status only from code
outside the API, which nothing validated (`.delay("\\udfff")`): it is escaped then, as
json.dumps escapes it, so every route and the event stream still answer JSON.
"""

from __future__ import annotations

import json

from flask import Response, current_app
from pydantic import BaseModel
from pydantic_core import PydanticSerializationError


def json_text(model: BaseModel) -> str:
    try:
        return model.model_dump_json()
    except PydanticSerializationError:
        return json.dumps(model.model_dump(mode="json"), separators=(",", ":"))


def model_response(model: BaseModel, status: int = 200) -> Response:
    response: Response = current_app.response_class(json_text(model) + "\n", status=status,
                                                    mimetype="application/json")
    return response
