# The two commands a newcomer needs: `make run` and `make test`. Both set up everything.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
HOST ?= 127.0.0.1
PORT ?= 8000
UPSTREAM_PORT ?= 8001

.PHONY: run test lint bench clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[dev]'
	touch $@

# The demo on a laptop: DEBUG on (the settings default to off and then demand a real
# DJANGO_SECRET_KEY) and curl answered without an API key from 127.0.0.1 (off by default).
run: export DJANGO_DEBUG = 1
run: export FLEXIAI_ANONYMOUS_LOOPBACK = 1
run: $(STAMP)
	@mkdir -p var
	$(BIN)/python manage.py migrate --noinput -v0
	$(BIN)/python manage.py flexiai_seed_demo --upstream http://$(HOST):$(UPSTREAM_PORT)
	@$(BIN)/python manage.py demo_admin
	@echo ""
	@echo "  demo page     http://$(HOST):$(PORT)/"
	@echo "  admin         http://$(HOST):$(PORT)/admin/"
	@echo "  live status   http://$(HOST):$(PORT)/admin/flexiai_django/status/"
	@echo "  chat (direct) curl -X POST http://$(HOST):$(PORT)/chat/direct -d '{\"message\": \"hi\"}'"
	@echo "  chat (decor.) curl -X POST http://$(HOST):$(PORT)/chat/decorator -d '{\"topic\": \"caching\"}'"
	@echo "  fake upstream http://$(HOST):$(UPSTREAM_PORT)/_stats  (break it: curl -X POST http://$(HOST):$(UPSTREAM_PORT)/_fault -d '{\"scope\": \"demo-primary\", \"status\": 500}')"
	@echo ""
	@bash -c 'trap "kill 0" EXIT; \
		$(BIN)/python manage.py flexiai_fake_upstream --host $(HOST) --port $(UPSTREAM_PORT) & \
		$(BIN)/python manage.py runserver $(HOST):$(PORT)'

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/mypy flexiai_django flexiai_site

test: $(STAMP) lint
	$(BIN)/python -m pytest

bench: $(STAMP)
	$(BIN)/python bench/run_all.py

clean:
	rm -rf $(VENV) var .pytest_cache .mypy_cache .ruff_cache
