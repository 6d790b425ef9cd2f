# The commands the README gives are the commands CI runs: `make demo` and `make test`.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
DEMO_DIR ?= demo
LABEXT := nbtools/labextension/package.json
LABEXT_SOURCES := $(wildcard labextension/src/*.ts labextension/style/*) \
	labextension/package.json labextension/package-lock.json labextension/tsconfig.json \
	labextension/build.sh

.PHONY: demo test lint install chromium cron node labextension

# Create the virtual environment and install nbtools with its test tools (again when pyproject changes).
$(BIN)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e ".[test]"
	touch $@

install: $(BIN)/.installed $(LABEXT)

# The JupyterLab extension: TypeScript in labextension/, built against the installed JupyterLab
# into nbtools/labextension/ (git-ignored), which the editable install then copies to where
# JupyterLab finds it (share/jupyter/labextensions/nbtools). Wheels ship it prebuilt.
$(LABEXT): $(BIN)/.installed $(LABEXT_SOURCES) | node
	PYTHON=$(abspath $(BIN))/python labextension/build.sh
	$(BIN)/pip install --quiet --no-deps -e .

labextension: $(LABEXT)

# Building the JupyterLab extension needs Node.js (users of the wheel do not); install it when
# it is missing (needs root).
node:
	@command -v npm >/dev/null || { apt-get update && apt-get install -y nodejs npm; } \
	  || { echo "Building the JupyterLab extension needs Node.js: run 'apt-get install -y nodejs npm' as root."; exit 1; }

# Create the demo project (bundled churn data) once, then run its whole pipeline.
demo: $(BIN)/.installed $(LABEXT)
	test -f $(DEMO_DIR)/pipeline.yaml || $(BIN)/nbtools new $(DEMO_DIR)
	$(BIN)/nbtools run --project $(DEMO_DIR)
	$(BIN)/nbtools runs list --project $(DEMO_DIR)

lint: $(BIN)/.installed
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/lint-imports
	$(BIN)/mypy
	$(BIN)/nbtools check templates notebooks

# The browser tests drive Debian's chromium; install it when it is missing (needs root).
chromium:
	@command -v chromium >/dev/null || { apt-get update && apt-get install -y chromium; } \
	  || { echo "The browser tests need Debian's chromium: run 'apt-get install -y chromium' as root."; exit 1; }

# The schedule tests install entries in the real crontab (saved and restored); Debian's cron
# package provides the crontab command. Install it when it is missing (needs root).
cron:
	@command -v crontab >/dev/null || { apt-get update && apt-get install -y cron; } \
	  || { echo "The schedule tests need the crontab command: run 'apt-get install -y cron' as root."; exit 1; }

# The binder test runs every notebook in notebooks/ with nbmake, in a fresh venv built from
# binder/requirements.txt (the environment Binder builds).
#
# The tests run in two processes (pytest-xdist), a test file at a time in each, so a file's
# module fixtures (a trained project, a server) are built once. --no-loadscope-reorder keeps the
# order of tests/conftest.py, which starts the two longest files first (xdist would otherwise
# start with the files of most tests).
test: lint chromium cron $(LABEXT)
	$(BIN)/pytest --numprocesses=2 --dist=loadfile --no-loadscope-reorder
