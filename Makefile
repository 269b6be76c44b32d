# scrm — two commands: `make run` and `make test` (plus `make bench`).
PYTHON ?= python3
VENV := .venv
UV_VERSION := 0.13.9
UV := $(VENV)/bin/uv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.synced

.PHONY: run test bench lint unit integration clean

$(UV):
	$(PYTHON) -m venv $(VENV)
	$(VENV)/bin/pip install --quiet --disable-pip-version-check "uv==$(UV_VERSION)"

$(STAMP): $(UV) uv.lock pyproject.toml $(wildcard libs/*/pyproject.toml services/*/pyproject.toml tools/*/pyproject.toml)
	$(UV) sync --frozen --inexact --all-packages
	touch $(STAMP)

install: $(STAMP)

run: $(STAMP)
	$(PY) -m scrm_stack.cli run

lint: $(STAMP)
	$(VENV)/bin/ruff check .
	$(VENV)/bin/lint-imports
	$(VENV)/bin/mypy services/*/src/*/domain

unit: $(STAMP)
	$(VENV)/bin/pytest tests/unit -q

test: lint
	$(VENV)/bin/pytest tests -q -p no:cacheprovider

bench: $(STAMP)
	$(PY) -m scrm_bench.main

clean:
	rm -rf .scrm
