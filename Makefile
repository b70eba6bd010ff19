# The front door: `make run` serves the product, `make test` runs every test, `make bench`
# measures the upload pipeline against the synchronous baseline (bench/README.md).
SHELL := /bin/bash

# Python 3.13: on PATH, or pyenv's install when pyenv has not activated it.
PYTHON ?= $(shell for p in python3.13 $$HOME/.pyenv/versions/3.13*/bin/python3.13; do \
	$$p -c 'import sys; assert sys.version_info[:2] == (3, 13)' 2>/dev/null && { echo $$p; break; }; done)
VENV ?= .venv
BIN := $(VENV)/bin
WEB_PORT ?= 8000
MONGO_PORT ?= 27018

# Local development and tests run with DEBUG on; production settings need DJANGO_SECRET_KEY.
export DJANGO_DEBUG ?= 1

# Debian packages the tests use (speech, audio conversion, the browser, promtool to check the
# alert rules, a test TLS certificate), by the command each provides (command:package where
# the names differ); `make test` installs the missing ones.
TEST_PACKAGES ?= espeak-ng ffmpeg chromium promtool:prometheus openssl

.PHONY: install setup run test lint bench bench-events bench-scaling system-packages fuzz

$(BIN)/.installed: requirements.txt requirements-local.txt requirements-dev.txt
	@test -n "$(PYTHON)" || { echo "Python 3.13 is needed (python3.13 on PATH or under pyenv)"; exit 1; }
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -r requirements-dev.txt
	touch $@

install: $(BIN)/.installed

setup: install
	$(BIN)/python manage.py migrate --noinput
	$(BIN)/python manage.py createcachetable
	$(BIN)/python manage.py load_question_bank
	$(BIN)/python manage.py setup_schedules
	$(BIN)/python manage.py demo_user

run: export MONGODB_URI ?= mongodb://127.0.0.1:$(MONGO_PORT)/?directConnection=true
run: export WEB_PORT := $(WEB_PORT)
run: setup
	@# One Prometheus directory for gunicorn and qcluster, emptied before they start: /metrics
	@# then shows the jobs' counters too (stale files of an earlier run would add old values).
	rm -rf var/prometheus && mkdir -p var/prometheus
	@echo "Starting the embedded MongoDB, qcluster and gunicorn; Ctrl-C stops them all."
	@echo "Serving on http://127.0.0.1:$(WEB_PORT)/ (API under /api/, admin under /admin/)"
	PROMETHEUS_MULTIPROC_DIR="$(abspath var/prometheus)" PATH="$(abspath $(BIN)):$$PATH" \
		$(BIN)/honcho --procfile Procfile.dev start

system-packages:
	@missing=""; for entry in $(TEST_PACKAGES); do \
		command -v $${entry%%:*} >/dev/null || missing="$$missing $${entry#*:}"; done; \
	if [ -z "$$missing" ]; then exit 0; fi; \
	if [ "$$(id -u)" = 0 ]; then sudo=""; \
	elif sudo -n true 2>/dev/null; then sudo="sudo"; \
	else echo "The tests need Debian packages:$$missing. Run: sudo apt-get install$$missing"; exit 1; fi; \
	echo "Installing Debian packages:$$missing"; \
	$$sudo apt-get update -qq && DEBIAN_FRONTEND=noninteractive \
		$$sudo apt-get install -y -qq --no-install-recommends $$missing >/dev/null

test: install system-packages
	$(BIN)/pytest $(PYTEST_ARGS)

# Schemathesis against a real gunicorn, every operation of /api/schema/ (part of `make test`).
fuzz: install
	$(BIN)/pytest tests/test_api_fuzz.py

lint: install
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

# About ten minutes; QUICK=1 runs a small load in under two (CI) and fails on any lost,
# duplicated or orphaned answer. BENCH_ARGS passes options: `make bench BENCH_ARGS=--help`.
bench: install system-packages
	$(BIN)/python -m bench.run $(if $(QUICK),--quick) $(BENCH_ARGS)

# The live event stream against polling ("Finish -> results"), and 1,000 idle streams on one
# web process (its memory, the upload wait beside them); QUICK=1 for a small run.
bench-events: install
	$(BIN)/python -m bench.events $(if $(QUICK),--quick) $(BENCH_ARGS)

# How cost grows with the work (candidates, web workers, clusters) on SQLite and PostgreSQL
# (BENCH_POSTGRES_URL, default postgres://postgres@127.0.0.1:5432/interview_bench): about
# ten minutes.
bench-scaling: install system-packages
	$(BIN)/python -m bench.scaling $(if $(QUICK),--quick) $(BENCH_ARGS)
