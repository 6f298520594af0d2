# `make run` starts the dashboard; `make test` installs everything and runs every test.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
ARGS ?=

.PHONY: install run test lint fmt clean

$(STAMP): setup.cfg pyproject.toml
	@# Debian's python3 lacks ensurepip until python3-venv is installed.
	$(PYTHON) -m venv $(VENV) || { [ "$$(id -u)" = 0 ] && apt-get install -y -q python3-venv \
		&& $(PYTHON) -m venv $(VENV); }
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[test,dev]'
	touch $@

install: $(STAMP)

run: $(STAMP)
	$(BIN)/sse-monitor serve $(ARGS)

test: $(STAMP)
	$(BIN)/python -m pytest $(PYTEST_ARGS)

lint: $(STAMP)
	$(BIN)/ruff format --check monitor tests
	$(BIN)/ruff check monitor tests
	$(BIN)/mypy monitor

fmt: $(STAMP)
	$(BIN)/ruff format monitor tests
	$(BIN)/ruff check --fix monitor tests

clean:
	rm -rf $(VENV) build dist *.egg-info .pytest_cache .mypy_cache .ruff_cache
