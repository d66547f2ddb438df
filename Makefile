# The README's two commands: `make run` (the demo server) and `make test` (everything CI runs).
# Both create .venv from pyproject.toml on first use. `make run ARGS="--no-demo --port 9000"`
# passes flags to `woundcare serve`.

PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
# pytest-xdist workers for `make test`: on the 2-core CI machine the browser, camera and
# network tests mostly wait (on Chromium, coturn, timers), so one worker more than cores pays
# off; with 4, eight Chromiums starve the timing checks (README says what was measured).
# `--dist loadgroup` keeps each `xdist_group` on one worker.
TEST_WORKERS ?= 3

# The browser tests that take the README's screenshots (those calling publish_screenshots).
SCREENSHOT_TESTS = $(shell grep -l publish_screenshots tests/e2e/test_*.py)

.PHONY: run test typecheck system-deps screenshots

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[test]'
	touch $@

run: $(VENV)/.installed
	$(PY) -m woundcare serve $(ARGS)

system-deps:
	@bash .ci/system-deps

# Never rewrites docs/screenshots, even with WOUNDCARE_UPDATE_SCREENSHOTS=1 in the shell:
# CI fails when a test run changes a tracked file. The slowest tests are listed at the end of
# every run, so the one that stretches CI past its 10 minutes is named where CI's output is read.
test: $(VENV)/.installed system-deps
	WOUNDCARE_UPDATE_SCREENSHOTS=0 $(PY) -m pytest -n $(TEST_WORKERS) --dist loadgroup --durations=25 $(PYTEST_ARGS)

# A maintainer's step after changing a page: runs the screenshot tests and, for each test that
# passes, copies its screenshots over docs/screenshots/ (review and commit them by hand).
screenshots: $(VENV)/.installed system-deps
	WOUNDCARE_UPDATE_SCREENSHOTS=1 $(PY) -m pytest -n $(TEST_WORKERS) --dist loadgroup $(SCREENSHOT_TESTS) $(PYTEST_ARGS)

typecheck: $(VENV)/.installed
	$(PY) -m mypy
