# `make run` starts the dashboard; `make test` installs everything and runs every test.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
ARGS ?=

# Debian packages the tests drive for real: logrotate rotates files under the tailer,
# chromium runs the dashboard (Playwright drives it; its own browser download is not used).
# command:package; htpasswd -B writes the users-file lines the auth tests read back;
# systemd-analyze verifies the units in systemd/ and rates their exposure; systemd-journal-remote
# (off PATH, so given as an absolute path) writes the real journals the journal source follows;
# redis-server is where many hosts meet (the fleet tests start their own, on unix sockets).
DEBIAN_PACKAGES := logrotate:logrotate chromium:chromium htpasswd:apache2-utils \
	systemd-analyze:systemd /lib/systemd/systemd-journal-remote:systemd-journal-remote \
	redis-server:redis-server

.PHONY: install run test bench lint fmt clean system-deps

$(STAMP): setup.cfg pyproject.toml
	@# Debian's python3 lacks ensurepip until python3-venv is installed.
	$(PYTHON) -m venv $(VENV) || { [ "$$(id -u)" = 0 ] && apt-get install -y -q python3-venv \
		&& $(PYTHON) -m venv $(VENV); }
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[test,dev,redis]'
	touch $@

# ESLint for web/static/js, pinned by package-lock.json: `npm ci` again whenever the lock changes.
NODE_STAMP := node_modules/.installed

$(NODE_STAMP): package.json package-lock.json
	npm ci --no-audit --no-fund
	touch $@

# `make test` runs the JS unit tests too (tests/test_frontend.py), `make lint` runs ESLint.
lint test: $(NODE_STAMP)

install: $(STAMP)

# A per-user state directory: clients resume and the charts keep their history across restarts.
STATE_DIR ?= $(or $(XDG_STATE_HOME),$(HOME)/.local/state)/sse-monitor

run: $(STAMP)
	$(BIN)/sse-monitor serve --state-dir $(STATE_DIR) $(ARGS)

test: $(STAMP) system-deps
	$(BIN)/python -m pytest $(PYTEST_ARGS)

# `make bench` measures against GNU tail -F (quick, ~4 min); BENCH_ARGS=--full for the issue's sizes (~20 min).
# The page benchmark needs Debian's chromium (`make system-deps` as root, or apt-get install
# chromium); without it that row is skipped, and the run says so.
bench: $(STAMP)
	$(BIN)/python bench/run.py $(BENCH_ARGS)

system-deps:
	@PATH="$$PATH:/usr/sbin:/sbin"; \
	missing=$$(for cp in $(DEBIAN_PACKAGES); do command -v $${cp%%:*} >/dev/null || [ -x "$${cp%%:*}" ] || echo $${cp#*:}; done); \
	if [ -n "$$missing" ]; then \
		if [ "$$(id -u)" = 0 ]; then apt-get update -q && apt-get install -y -q $$missing; \
		else echo "missing Debian packages: $$missing (run as root, or: sudo apt-get install $$missing)"; exit 1; fi; \
	fi

# mypy: one run per directory. tests/ and bench/ are not packages, so mypy names each file by
# its basename, and tests/conftest.py and tests/browser/conftest.py would both be module
# `conftest` in a single run. setup.cfg's mypy_path = tests puts tests/ on the import path, as
# pytest does, so `from helpers import ...` in tests/browser resolves.
lint: $(STAMP)
	$(BIN)/ruff format --check monitor tests bench
	$(BIN)/ruff check monitor tests bench
	$(BIN)/mypy monitor
	$(BIN)/mypy tests/*.py
	$(BIN)/mypy tests/browser
	$(BIN)/mypy bench
	node_modules/.bin/eslint .

fmt: $(STAMP)
	$(BIN)/ruff format monitor tests bench
	$(BIN)/ruff check --fix monitor tests bench

clean:
	rm -rf $(VENV) node_modules build dist *.egg-info .pytest_cache .mypy_cache .ruff_cache
