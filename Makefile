# The two entry points of the README: `make demo` and `make test`. Everything else is a helper.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)

.PHONY: demo test lint unit browser-deps evalai-deps lock clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[server,hep,dask,demo,test]'
	touch $(STAMP)

## Run the demo site (SQLite + embedded Redis + worker) on http://127.0.0.1:8000
demo: $(STAMP)
	$(BIN)/podium demo $(if $(PORT),--port $(PORT))

## Debian's chromium for the browser tests (never a downloaded browser build), and bubblewrap with
## libseccomp for the code-run jail (docs/codabench.md)
browser-deps:
	@{ command -v chromium && command -v bwrap && ldconfig -p | grep -q libseccomp.so.2; } \
	  >/dev/null 2>&1 || { $(SUDO) apt-get update -qq && DEBIAN_FRONTEND=noninteractive \
	  $(SUDO) apt-get install -y -qq chromium bubblewrap libseccomp2 >/dev/null; }

## The unmodified EvalAI CLI in its own virtualenv: it pins packages that do not build on Python 3.11
## (lxml 4.6.2), so it goes in without its pins and with a newer lxml (docs/evalai.md).
EVALAI := var/evalai-venv/bin/evalai
$(EVALAI):
	$(PYTHON) -m venv var/evalai-venv
	var/evalai-venv/bin/pip install --quiet --no-deps evalai==1.3.18
	var/evalai-venv/bin/pip install --quiet beautifulsoup4==4.7.1 beautifultable==0.7.0 'boto3>=1.9.88' \
	  click==6.7 docker==3.6.0 'lxml>=4.9,<5' python-dateutil==2.7.3 requests==2.25.1 \
	  validators==0.12.6 termcolor==1.1.0 'tqdm>=4.49.0'
evalai-deps: $(EVALAI)

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/mypy
	$(BIN)/lint-imports

unit: $(STAMP) browser-deps evalai-deps
	$(BIN)/pytest -n 2 -q

## The whole suite: lint, types, import contracts, then every test (SQLite, PostgreSQL, Redis, browser)
test: lint unit

## Refresh requirements.lock (the image's pinned dependencies) after changing pyproject.toml: the
## versions installed in .venv (what `make test` ran with) pin the image's, with their hashes.
lock: $(STAMP)
	mkdir -p var
	$(BIN)/python -m pip freeze --exclude-editable > var/tested-versions.txt
	$(PYTHON) -m venv var/uv-venv
	var/uv-venv/bin/pip install --quiet uv
	var/uv-venv/bin/uv pip compile pyproject.toml --extra server --extra hep \
	  --python-version 3.11 --generate-hashes -c var/tested-versions.txt -o requirements.lock

clean:
	rm -rf $(VENV) var .pytest_cache .mypy_cache .ruff_cache
