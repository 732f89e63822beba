"""HTTP: the API blueprint and everything that serves a request.

Routes, request parsing, the JSON error shape, bearer tokens, submit rate limits,
the event stream, the OpenAPI document, the HTTP-only response shapes and the
dashboard page.
Routes stay thin: they parse, call the job service (backend.jobs.service), and
shape the response.

Imported by: the API process (gunicorn, run.py, the Flask CLI). A worker imports it too,
since create_app builds the whole app there, but serves no request and runs none of it.
"""
