# Two commands: `make run` starts the product, `make test` runs the whole suite on PostgreSQL.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
export DATABASE_URL_TEST ?= postgres://postgres@127.0.0.1:5432/refunds

.PHONY: run test venv check clean browser prometheus dashboard bench bench-review fuzz screenshots

venv: $(STAMP)

# The venv is rebuilt whenever requirements.txt changes.
$(STAMP): requirements.txt
	@echo "==> Python packages into $(VENV) (first time: about 2-3 minutes from the local wheel cache,"
	@echo "    longer when pip downloads; afterwards only when requirements.txt changes)"
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --progress-bar on -r requirements.txt
	touch $(STAMP)

run: venv
	./bin/run

# Browser tests drive Debian's Chromium (no browser download).
browser:
	@command -v chromium >/dev/null || { echo "installing Debian's chromium for the browser tests"; \
	  apt-get install -y -q chromium >/dev/null; }

# The monitoring tests run Debian's prometheus and promtool (tests/site/test_monitoring.py).
prometheus:
	@command -v promtool >/dev/null && command -v prometheus >/dev/null || { \
	  echo "installing Debian's prometheus for the monitoring tests"; apt-get install -y -q prometheus >/dev/null; }

# deploy/grafana/dashboards/refundsite.json from deploy/grafana/dashboard.py (grafanalib).
dashboard: venv
	$(PY) deploy/grafana/dashboard.py

check: venv
	DATABASE_URL=$(DATABASE_URL_TEST) DJANGO_SETTINGS_MODULE=tests.settings $(PY) manage.py makemigrations --check --dry-run
	DATABASE_URL=$(DATABASE_URL_TEST) DJANGO_SETTINGS_MODULE=tests.settings $(PY) manage.py check

test: venv browser prometheus check
	DATABASE_URL=$(DATABASE_URL_TEST) $(PY) -m pytest $(PYTEST_ARGS)

# Speed of the batch path in a throw-away database (docs/performance.md); BENCH_PHOTOS=N photos per set.
bench: venv
	./bin/manage migrate --noinput >/dev/null
	./bin/manage bootstrap_model
	./bin/manage bench

# Speed of the review desk through its own endpoints (docs/performance.md); BENCH_REVIEW_ITEMS=N items.
bench-review: venv
	./bin/manage migrate --noinput >/dev/null
	./bin/manage bench_review

# Every API endpoint fuzzed from its OpenAPI schema with more cases than the suite's (FUZZ_EXAMPLES per operation).
fuzz: venv
	DATABASE_URL=$(DATABASE_URL_TEST) FUZZ_EXAMPLES=$${FUZZ_EXAMPLES:-150} $(PY) -m pytest -m fuzz -q

# The pages at 1366x768 into docs/screenshots/ (shown in the README).
screenshots: venv browser
	DATABASE_URL=$(DATABASE_URL_TEST) $(PY) -m pytest -m screenshots -q tests/browser/test_screenshots.py

clean:
	rm -rf $(VENV) staticfiles .pytest_cache
