# The two commands of the quick start: `make run` and `make test`.
# Everything lives in .venv, built from the compiled lock; a stamp file per
# lock means a second run installs nothing.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
PIP    := $(BIN)/python -m pip --disable-pip-version-check -q

.PHONY: run test bench lock clean help
.DEFAULT_GOAL := help

help:
	@echo "make run    start Redis (embedded if none), the API (gunicorn), a worker and Flower"
	@echo "make test   run the whole test suite against real Redis, workers and gunicorn"
	@echo "make bench  measure the service against Redis and raw Celery (bench/results/latest.*)"
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

test: $(VENV)/.dev-installed
	$(BIN)/python -m pytest $(PYTEST_ARGS)

# A private Redis, API and workers; BENCH_ARGS="--quick" for a tiny run, "--help" for the rest.
bench: $(VENV)/.dev-installed
	$(BIN)/python -m bench $(BENCH_ARGS)

lock: $(VENV)/.dev-installed
	$(BIN)/pip-compile -q --strip-extras --allow-unsafe --no-emit-index-url --no-emit-find-links -o requirements.txt requirements.in
	$(BIN)/pip-compile -q --strip-extras --allow-unsafe --no-emit-index-url --no-emit-find-links -o requirements-dev.txt requirements-dev.in

clean:
	rm -rf $(VENV) .pytest_cache var
