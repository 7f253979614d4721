# The two commands a newcomer needs: `make demo` and `make test`.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin

.PHONY: demo test test-foreign-host unit e2e lint bench deps venv clean sigstore-verifier

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

# The independent verifier of Sigstore bundles that the signing tests use: npm's @sigstore/verify,
# pinned by tests/support/sigstore/package-lock.json, installed into its node_modules when missing
# or older than the lock (npm itself, when missing, from Debian).
SIGSTORE_VERIFIER := tests/support/sigstore
$(SIGSTORE_VERIFIER)/node_modules/.installed: $(SIGSTORE_VERIFIER)/package-lock.json
	command -v npm >/dev/null 2>&1 || sh scripts/install-test-deps.sh npm
	cd $(SIGSTORE_VERIFIER) && npm ci --no-audit --no-fund --loglevel=error
	touch $@

sigstore-verifier: $(SIGSTORE_VERIFIER)/node_modules/.installed

# Everything: lint, types, unit and end-to-end tests against real peers, then once more as on
# another host.
test: venv deps lint sigstore-verifier
	$(BIN)/pytest -q
	$(MAKE) --no-print-directory test-foreign-host

# As on a host without Linux's calls and POSIX modes (macOS, Windows): the unit tests and a
# representative set of end-to-end tests, every Python process of the run made foreign by
# tests/support/foreign_host/sitecustomize.py; ZEROIMAGE_TEST_FOREIGN_HOST lets test_foreign_host
# check that it was.
FOREIGN_HOST_E2E := $(addprefix tests/e2e/test_,build.py formats.py registry.py customize.py api.py foreign_host.py)
test-foreign-host: venv deps sigstore-verifier
	ZEROIMAGE_TEST_FOREIGN_HOST=1 PYTHONPATH="$(CURDIR)/tests/support/foreign_host$${PYTHONPATH:+:$$PYTHONPATH}" \
		$(BIN)/pytest -q tests/unit $(FOREIGN_HOST_E2E)

unit: venv sigstore-verifier
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
