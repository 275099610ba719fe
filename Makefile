# partnerflow: the two commands are `make demo` and `make test`. Both set up what they need themselves.
PYTHON ?= python3
UV_VERSION := 0.13.8
TOOLS := .tools
UV := $(TOOLS)/bin/uv
VENV := .venv

.PHONY: demo test check lint typecheck lock-check bench clean

$(UV):
	$(PYTHON) -m venv $(TOOLS)
	$(TOOLS)/bin/pip install --quiet --disable-pip-version-check uv==$(UV_VERSION)

$(VENV)/.synced: uv.lock pyproject.toml dev/pyproject.toml | $(UV)
	$(UV) sync --frozen --python $(PYTHON)
	touch $@

## Start the embedded stack and Airflow, play one quarter, print a summary. KEEP=1 leaves it running.
demo: $(VENV)/.synced
	$(VENV)/bin/partnerflow demo $(if $(KEEP),--keep-running)

## Lint, then the whole test suite against real services it starts itself.
test: $(VENV)/.synced lint typecheck
	$(VENV)/bin/pytest

## The fast loop (under a minute): lint, types, and the unit and DAG tests. No services started.
check: $(VENV)/.synced lint typecheck
	$(VENV)/bin/pytest -q tests/unit tests/dags

typecheck: $(VENV)/.synced
	$(VENV)/bin/mypy

## The lock still matches pyproject.toml (and dev/pyproject.toml); CI runs it before the tests.
lock-check: | $(UV)
	$(UV) lock --check --python $(PYTHON)

lint: $(VENV)/.synced
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .

## Benchmarks: print figures and write var/bench/*.json (never part of the tests).
bench: $(VENV)/.synced
	$(VENV)/bin/python -m bench

clean:
	rm -rf $(VENV) $(TOOLS) var
