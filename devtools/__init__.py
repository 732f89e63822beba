"""Development tooling used by `make run` and the tests; not imported by the service."""
