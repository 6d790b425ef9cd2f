# The commands the README gives are the commands CI runs: `make demo` and `make test`.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
DEMO_DIR ?= demo

.PHONY: demo test lint install chromium

# Create the virtual environment and install nbtools with its test tools (again when pyproject changes).
$(BIN)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e ".[test]"
	touch $@

install: $(BIN)/.installed

# Create the demo project (bundled churn data) once, then run its whole pipeline.
demo: $(BIN)/.installed
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

test: lint chromium
	$(BIN)/pytest
	$(BIN)/pytest --nbmake notebooks
