# Two commands on a fresh machine with Python 3.11:  `make demo`  and  `make test`.
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV   := .venv
BIN    := $(VENV)/bin
export PATH := $(CURDIR)/$(BIN):$(PATH)

.PHONY: setup tools demo test lint up bench clean

setup: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e ".[dev]"
	touch $@

tools:               ## Debian's chromium, chromedriver and prometheus for the browser and Prometheus tests (root)
	deploy/install-tools.sh

demo: setup          ## train, register and roll out three versions on the embedded default
	$(BIN)/rollout demo

lint: setup
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy

test: setup lint     ## lint, type-check and run the whole test suite (two workers, a file at a time on each)
	$(BIN)/pytest -n 2 --dist loadfile

bench: setup         ## router vs bare FastAPI vs mlflow serve, and in process; sequential decisions and the long coverage runs; bounded window; drift vs Evidently; retention's prune rate and the router's p99 while it runs; a failed watch's rollback across 3 routers; CLI start-up vs mlflow --help; timings the tests wait for; the full stack soaked while a canary runs; mlflow server with and without its job runner
	$(BIN)/python bench/router.py
	$(BIN)/python bench/router_inproc.py
	$(BIN)/python bench/decisions.py
	$(BIN)/pytest -m long_coverage
	$(BIN)/python bench/window.py
	$(BIN)/python bench/drift.py
	$(BIN)/python bench/feature_drift.py
	$(BIN)/python bench/retention.py
	$(BIN)/python bench/rollback.py
	$(BIN)/python bench/cli.py
	$(BIN)/python bench/timings.py
	$(BIN)/python bench/soak.py
	$(BIN)/python bench/mlflow_server.py

screenshots: setup  ## refresh docs/img/dashboard-overview.png and dashboard-rollout.png (Chromium; make tools)
	ROLLOUT_SCREENSHOTS=docs/img $(BIN)/pytest -q -p no:cacheprovider tests/integration/test_dashboard_browser.py

up: setup            ## registry + store + manager + router on loopback
	$(BIN)/rollout up

clean:
	rm -rf $(VENV) .rollout .mypy_cache .ruff_cache .pytest_cache
