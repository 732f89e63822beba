"""The job domain: what a job is and what can be done with one.

A *task* is a kind of work (defined in backend/tasks.py, listed at GET /tasks);
a *job* is one submitted instance of a task, with an id (GET /status/<id>).
Here: the typed accessors to the app's shared objects (extensions.py), the job
states, the job records in Redis, the watch that follows a job's changes and the
slots that bound how many wait at once, the registry of public tasks, idempotency
keys, input parsing, the status object, and the service layer that routes, the CLI
and tests share.

Imported by: both processes. The API submits, reads and cancels jobs; the worker
marks them started through the same records.
"""
