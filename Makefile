# The README's two commands: `make run` (the demo server) and `make test` (everything CI runs).
# Both create .venv from pyproject.toml on first use.

PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python

.PHONY: run test system-deps

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[test]'
	touch $@

run: $(VENV)/.installed
	$(PY) -m woundcare serve

system-deps:
	@bash .ci/system-deps

test: $(VENV)/.installed system-deps
	$(PY) -m pytest $(PYTEST_ARGS)
