# Two commands do all the set-up on a fresh machine: `make run` and `make test`.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
RUN_STAMP  := $(VENV)/.installed-run
TEST_STAMP := $(VENV)/.installed-test

.PHONY: install install-test run test test-all screenshots bench chaos soak lint browser clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip setuptools wheel

# `make run` needs only the runtime dependencies (a quick install on a fresh machine).
$(RUN_STAMP): setup.cfg pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install --quiet -e .
	touch $@

$(TEST_STAMP): setup.cfg pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install --quiet -e '.[test]'
	touch $@ $(RUN_STAMP)

install: $(RUN_STAMP)
install-test: $(TEST_STAMP)

## run: install, initialise and start the hub with demo sources on SQLite
run: install
	$(BIN)/feedback-hub run --demo

## test: install and run the test suite (SQLite; PostgreSQL too when HUB_TEST_DATABASE_URL is set).
## It writes nothing tracked: the browser tests' screenshots go to build/screenshots/.
test: install-test browser
	$(BIN)/python -m pytest -q -n 2 --dist loadfile

## screenshots: refresh the README's pictures in docs/screenshots/ (from the demo data)
screenshots: install-test browser
	HUB_SCREENSHOTS=docs/screenshots $(BIN)/python -m pytest -q -p no:xdist tests/test_browser_ui.py -k screenshots

# The accessibility engine the browser tests inject (npm package axe-core, the
# version pinned by tests/browser/package-lock.json), installed into build/axe.
# Without npm the accessibility tests are skipped, the others still run.
AXE := build/axe/node_modules/axe-core/axe.min.js
$(AXE): tests/browser/package.json tests/browser/package-lock.json
	@if command -v npm >/dev/null; then \
	  mkdir -p build/axe && cp tests/browser/package.json tests/browser/package-lock.json build/axe/ && \
	  { (cd build/axe && npm ci --no-audit --no-fund --silent) && touch $@ || \
	    echo "note: npm ci failed; accessibility (axe-core) tests will be skipped"; }; \
	else echo "note: npm missing; accessibility (axe-core) tests will be skipped (apt-get install npm)"; fi

## browser: Debian's Chromium for the UI tests (never a downloaded browser), and axe-core
browser: $(AXE)
	@test -x /usr/bin/chromium || { \
	  if [ "$$(id -u)" = 0 ]; then apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium chromium-driver >/dev/null; \
	  else echo "note: /usr/bin/chromium missing; browser tests will be skipped (apt-get install chromium chromium-driver)"; fi; }


## test-all: include the slow soak/load tests
test-all: install-test browser
	$(BIN)/python -m pytest -q -m "slow or not slow"

## bench: every bench/ script in its quick mode, then a summary table (bench/README.md);
## BENCH_ARGS="--only ingest" or "--full" for one bench or full-size runs
bench: install-test
	$(BIN)/python bench/run_all.py $(BENCH_ARGS)

## chaos: the fault suite; prints delivered / duplicates / lost per fault (every row must say 0 and 0).
## CHAOS_ARGS="--scale 3" for bigger runs, "--database-url postgresql+psycopg://..." for PostgreSQL.
chaos: install-test
	$(BIN)/python bench/chaos.py $(CHAOS_ARGS)

## soak: the multi-process soak (PostgreSQL, Redis, 2 gunicorn web nodes, 2 Celery workers, 2 schedulers,
## kill -9 midway; docs/celery.md). SOAK_ARGS="--minutes 2" for a short run.
soak: install-test
	$(BIN)/python -m pip install --quiet -e '.[test,production]'
	$(BIN)/python bench/soak.py $(SOAK_ARGS)

lint: install-test
	$(BIN)/ruff check hub plugins tests bench examples

clean:
	rm -rf $(VENV) instance .pytest_cache build *.egg-info
