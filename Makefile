# The two commands of the quick start: `make run` and `make test`.
# Everything lives in .venv, built from the compiled lock; a stamp file per
# lock means a second run installs nothing.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
PIP    := $(BIN)/python -m pip --disable-pip-version-check -q

.PHONY: run test lint bench docs lock clean help
.DEFAULT_GOAL := help

help:
	@echo "make run    start Redis (embedded if none), the API (gunicorn), a worker and Flower"
	@echo "make test   lint, then run the whole test suite against real Redis, workers and gunicorn"
	@echo "make lint   ruff (lint, import order) and mypy (backend/, config.py)"
	@echo "make bench  measure the service against Redis and raw Celery (bench/results/latest.*, docs/performance.md)"
	@echo "make docs   refresh the figures tables of docs/ from the bench's and the reliability suite's JSON"
	@echo "make lock   recompile requirements*.txt from requirements*.in"

$(BIN)/python:
	@$(PYTHON) -c 'import sys; sys.exit(sys.version_info < (3, 11))' \
	  || { echo "Python >= 3.11 is required (found $$($(PYTHON) --version))"; exit 1; }
	$(PYTHON) -m venv $(VENV)
	$(PIP) install --upgrade pip

$(VENV)/.runtime-installed: requirements.txt | $(BIN)/python
	$(PIP) install -r requirements.txt
	@touch $@

$(VENV)/.dev-installed: requirements.txt requirements-dev.txt | $(BIN)/python
	$(PIP) install -r requirements.txt -r requirements-dev.txt
	@touch $@ $(VENV)/.runtime-installed

run: $(VENV)/.runtime-installed
	$(BIN)/python -m devtools.stack

test: lint
	$(BIN)/python -m pytest $(PYTEST_ARGS)

# The linters the Flask project runs; their settings are in pyproject.toml.
lint: $(VENV)/.dev-installed
	$(BIN)/ruff check .
	$(BIN)/mypy

# A private Redis, API and workers; BENCH_ARGS="--quick" for a tiny run, "--help" for the rest.
bench: $(VENV)/.dev-installed
	$(BIN)/python -m bench $(BENCH_ARGS)
	$(BIN)/python -m devtools.docs_figures

# docs/performance.md and docs/reliability.md from bench/results/latest.json and the
# last complete reliability run (var/reliability/figures.json); tests/test_docs.py checks them.
docs: $(VENV)/.dev-installed
	$(BIN)/python -m devtools.docs_figures

lock: $(VENV)/.dev-installed
	$(BIN)/pip-compile -q --strip-extras --allow-unsafe --no-emit-index-url --no-emit-find-links -o requirements.txt requirements.in
	$(BIN)/pip-compile -q --strip-extras --allow-unsafe --no-emit-index-url --no-emit-find-links -o requirements-dev.txt requirements-dev.in

clean:
	rm -rf $(VENV) .pytest_cache var
