# The two entry points of the README: `make demo` and `make test`. Everything else is a helper.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)

.PHONY: demo test lint unit browser-deps evalai-deps clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[test]'
	touch $(STAMP)

## Run the demo site (SQLite + embedded Redis + worker) on http://127.0.0.1:8000
demo: $(STAMP)
	$(BIN)/podium demo

## Debian's chromium for the browser tests (never a downloaded browser build)
browser-deps:
	@command -v chromium >/dev/null 2>&1 || { $(SUDO) apt-get update -qq && \
	  DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -qq chromium >/dev/null; }

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/mypy
	$(BIN)/lint-imports

unit: $(STAMP) browser-deps
	$(BIN)/pytest -n 2 -q

## The whole suite: lint, types, import contracts, then every test (SQLite, PostgreSQL, Redis, browser)
test: lint unit

clean:
	rm -rf $(VENV) var .pytest_cache .mypy_cache .ruff_cache
