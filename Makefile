# Two commands on a fresh machine:  `make demo` (set up + run the main job) and `make test`.
# Everything a fresh clone needs is installed from here: a virtualenv with the
# project and its dev tools, and the Kafka broker jars (resolved with Maven once, cached).

PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: setup demo test lint unit clean browser-deps prometheus-deps

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[dev]'
	touch $(STAMP)

setup: $(STAMP)

# The Chromium tests (tests/browser): Debian's chromium package (a browser's own download does not
# work everywhere) and the browser SDKs pinned in tests/browser/package-lock.json. Quick when present.
BROWSER_DIR := tests/browser
BROWSER_STAMP := $(BROWSER_DIR)/node_modules/.installed
SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)

$(BROWSER_STAMP): $(BROWSER_DIR)/package.json $(BROWSER_DIR)/package-lock.json
	cd $(BROWSER_DIR) && npm ci --no-audit --no-fund --ignore-scripts --loglevel=error
	touch $(BROWSER_STAMP)

browser-deps: $(BROWSER_STAMP)
	@test -x /usr/bin/chromium || { $(SUDO) apt-get update -qq && \
		DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -qq --no-install-recommends chromium; }
	@test -x /usr/bin/chromium || { echo "chromium could not be installed: the browser tests will fail"; exit 1; }

# Prometheus and promtool (tests/deploy: alert-rule unit tests, the scrape integration test):
# Debian's prometheus package. Quick when present.
prometheus-deps:
	@test -x /usr/bin/promtool || { $(SUDO) apt-get update -qq && \
		DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -qq --no-install-recommends prometheus; }
	@test -x /usr/bin/promtool || { echo "prometheus could not be installed: tests/deploy will fail"; exit 1; }

demo: setup
	$(BIN)/webhouse demo

lint: setup
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy

test: lint browser-deps prometheus-deps
	$(BIN)/pytest -q

unit: setup prometheus-deps
	$(BIN)/pytest -q -m "not kafka"

clean:
	rm -rf $(VENV) .webhouse .pytest_cache .mypy_cache .ruff_cache
