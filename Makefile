# The two commands a newcomer types: `make run` and `make test` (see README.md).
# Both create .venv with the system's python3 (3.11+) when it is missing.

PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-stamp
NODE_STAMP := node_modules/.installed-stamp
HOST ?= 127.0.0.1
PORT ?= 8000
# The PostgreSQL and Redis the second test pass uses (skipped with a reason when unreachable).
TEST_POSTGRES_URL ?= postgres://postgres@127.0.0.1:5432/test
TEST_REDIS_URL ?= redis://127.0.0.1:6379/0

.PHONY: run test lint pytest test-postgres test-js install clean

$(STAMP): pyproject.toml
	@$(PYTHON) -c 'import sys; sys.exit(0 if sys.version_info >= (3, 11) else "Python 3.11+ is needed; set PYTHON=python3.11")'
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e ".[test,scale]"
	touch $(STAMP)

# The browser tests' axe-core (package.json's devDependencies), when npm is there.
$(NODE_STAMP): package.json
	@if command -v npm >/dev/null 2>&1; then npm install --no-audit --no-fund && touch $(NODE_STAMP); \
	else echo "SKIPPED npm install: npm is not installed (the accessibility tests need axe-core)"; fi

install: $(STAMP) $(NODE_STAMP)

# Serves the portal on the embedded defaults: SQLite, in-memory channel layer, the runner and
# the reference Agent Generator inside the web process. DEBUG is on unless the environment says.
run: export DEBUG ?= true
run: $(STAMP)
	$(BIN)/python manage.py migrate --noinput
	$(BIN)/python manage.py ensure_demo_user
	$(BIN)/python manage.py runserver $(HOST):$(PORT)

test: lint pytest test-postgres test-js

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy

# First pass: the whole suite on the embedded defaults (SQLite, in-memory layer). Tests that
# need Redis or Chromium find them themselves or skip with a one-line reason.
pytest: $(STAMP) $(NODE_STAMP)
	TEST_REDIS_URL=$(TEST_REDIS_URL) $(BIN)/pytest

# Second pass: the tests marked `postgres` or `alldb`, with PostgreSQL as the default database.
test-postgres: $(STAMP)
	DATABASE_URL=$(TEST_POSTGRES_URL) TEST_REDIS_URL=$(TEST_REDIS_URL) \
		$(BIN)/pytest -m "postgres or alldb"

test-js:
	@if command -v node >/dev/null 2>&1; then node --test tests/js/; \
	else echo "SKIPPED tests/js: node is not installed (the JS client's tests need Node 20+)"; fi

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache
