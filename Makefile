# scrm — two commands: `make run` and `make test` (plus `make bench`).
PYTHON ?= python3
VENV := .venv
UV_VERSION := 0.13.9
UV := $(VENV)/bin/uv
PY := $(VENV)/bin/python
# Two installs: what the product needs to run (`make run`, `make bench`), and that plus the dev group
# (pytest, ruff, mypy, … for `make test` / `make lint`). --inexact: a venv synced for tests keeps its dev tools.
RUN_STAMP := $(VENV)/.synced-run
DEV_STAMP := $(VENV)/.synced-dev
DEPS := $(UV) uv.lock pyproject.toml $(wildcard libs/*/pyproject.toml services/*/pyproject.toml tools/*/pyproject.toml)

.PHONY: run test bench lint unit install clean audit

$(UV):
	$(PYTHON) -m venv $(VENV)
	$(VENV)/bin/pip install --quiet --disable-pip-version-check "uv==$(UV_VERSION)"

$(RUN_STAMP): $(DEPS)
	$(UV) sync --frozen --inexact --all-packages --no-dev
	touch $(RUN_STAMP)

$(DEV_STAMP): $(DEPS)
	$(UV) sync --frozen --inexact --all-packages
	touch $(DEV_STAMP) $(RUN_STAMP)

install: $(RUN_STAMP)

run: $(RUN_STAMP)
	$(PY) -m scrm_stack.cli run

lint: $(DEV_STAMP)
	$(VENV)/bin/ruff check .
	$(VENV)/bin/lint-imports
	$(VENV)/bin/mypy services/*/src/*/domain

unit: $(DEV_STAMP)
	$(VENV)/bin/pytest tests/unit -q

test: lint
	$(VENV)/bin/pytest tests -q -p no:cacheprovider
	$(PY) -m tests.audit.month

# The send gate's month audit alone: 10,000 contacts in 39 zones through a month, checked by an independent auditor.
audit: $(DEV_STAMP)
	$(PY) -m tests.audit.month

bench: $(RUN_STAMP)
	$(PY) -m scrm_bench.main

clean:
	rm -rf .scrm
