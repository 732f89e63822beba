"""The dashboard at /: a static page (backend/templates, backend/static) that lists the
server's job history and submits, follows, cancels and retries jobs through the public
API, from the browser.

The page holds no secret and calls nothing on the server side, so it is served without
a token; the API calls it makes carry the user's token (backend/static/api.js). It offers
what the token's role allows (GET /me, backend/static/caller.js): the API checks every call anyway.
"""

from __future__ import annotations

from flask import Blueprint, Response, current_app, render_template

from backend.api.routes import routes
from backend.jobs import states
from backend.jobs.callers import ROLE_LABELS
from backend.jobs.history import CANCELLABLE_STATES, RETRYABLE_STATES

# Everything the page loads comes from this origin: no CDN (users may be offline),
# no inline script, nothing that can run code injected into a task's result.
CONTENT_SECURITY_POLICY = (
    "default-src 'none'; script-src 'self'; style-src 'self'; connect-src 'self'; "
    "img-src 'self' data:; base-uri 'none'; form-action 'self'; frame-ancestors 'none'"
)


bp = Blueprint("dashboard", __name__)

# The page's actions, by the endpoint each calls.
ACTION_ENDPOINTS = {"submit": "submit_long_task", "cancel": "cancel_job", "retry": "retry_job",
                    "retry_all": "retry_jobs", "queues": "list_queues"}


def roles_needed() -> dict[str, str]:
    """The role each of the page's actions needs, as its route declares it."""
    role_of = {route.endpoint: route.role.label for route in routes()}
    return {action: role_of[endpoint] for action, endpoint in ACTION_ENDPOINTS.items()}


@bp.get("/")
def index() -> Response:
    # The states and which of them end, retry or cancel, the roles in order and the role each
    # action needs are written into the page, so the page's scripts (backend/static/job_states.js,
    # caller.js) read them instead of keeping copies.
    page = render_template(
        "dashboard.html",
        flower_url=current_app.config["FLOWER_URL"],
        states=states.ALL_STATES,
        final_states=" ".join(sorted(states.FINAL_STATES)),
        retryable_states=" ".join(sorted(RETRYABLE_STATES)),
        cancellable_states=" ".join(sorted(CANCELLABLE_STATES)),
        roles=" ".join(ROLE_LABELS),
        roles_needed=roles_needed(),
    )
    response = current_app.make_response(page)
    response.headers["Content-Security-Policy"] = CONTENT_SECURITY_POLICY
    response.headers["X-Content-Type-Options"] = "nosniff"
    response.headers["Referrer-Policy"] = "no-referrer"
    return response
