# The two commands a newcomer needs: `make demo` and `make test`.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin

.PHONY: demo test unit e2e lint bench deps venv clean

# The project's virtual environment, rebuilt when pyproject.toml changes.
$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[test]'
	touch $@

venv: $(VENV)/.installed

# Build a FROM-scratch image of a small static program and run it.
demo: venv
	PATH="$(CURDIR)/$(BIN):$$PATH" sh examples/demo.sh

# The Debian packages the tests use as independent peers (only what is missing).
deps:
	sh scripts/install-test-deps.sh

# Everything: lint, types, unit and end-to-end tests against real peers.
test: venv deps lint
	$(BIN)/pytest -q

unit: venv
	$(BIN)/pytest -q tests/unit

e2e: venv deps
	$(BIN)/pytest -q tests/e2e

lint: venv
	$(BIN)/ruff check src tests $(wildcard bench)
	$(BIN)/ruff format --check src tests $(wildcard bench)
	$(BIN)/mypy

bench: venv deps
	sh scripts/install-test-deps.sh buildah
	$(BIN)/python bench/run.py

clean:
	rm -rf $(VENV) build dist src/*.egg-info .pytest_cache .mypy_cache .ruff_cache examples/hello/hello hello.tar
