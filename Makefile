# Thin entry points; the work is in scripts/.  `make help` lists them.
SHELL := /bin/bash
VENV  ?= .venv
PY    := $(VENV)/bin/python
export PATH := $(CURDIR)/$(VENV)/bin:$(PATH)

.PHONY: help install install-dev up down status worker demo test test-unit test-versions lint bench chaos soak clean readme

help:  ## list the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-10s %s\n", $$1, $$2}'

install: $(VENV)/.installed-run  ## create .venv with what running needs (no dev tools)

install-dev: $(VENV)/.installed-dev  ## .venv + test and lint tools, chromium, promtool

$(VENV)/.installed-run: pyproject.toml
	@scripts/install.sh $(VENV) run
	@touch $@

$(VENV)/.installed-dev: pyproject.toml
	@scripts/install.sh $(VENV) dev
	@touch $@ $(VENV)/.installed-run

up:  ## start Kafka (KRaft) and Redis on 127.0.0.1 (installs them on first use)
	@scripts/stack.sh up

down:  ## stop the Kafka and Redis that `make up` started
	@scripts/stack.sh down

status:  ## show whether Kafka and Redis are running
	@scripts/stack.sh status

worker: install up  ## run the worker in the foreground
	@. scripts/stack-env.sh && $(VENV)/bin/shopstream worker

demo: install  ## install, start everything, replay a generated clickstream, show the outputs and the demo shop URL
	@scripts/demo.sh

test: install-dev  ## unit + integration tests (real Kafka and Redis), + unit tests on 3.13
	@scripts/test.sh

test-unit: install-dev  ## unit tests only (no services)
	@$(PY) -m pytest -m "not integration and not chaos" -q -n auto

test-versions:  ## the unit suite on Python 3.12 and 3.13, each in its own .venv-3.x
	@scripts/test_versions.sh 3.12 3.13

chaos: install-dev  ## fault injection: kill -9, poison pills, Redis/Kafka outages, duplicates, slow consumer
	@scripts/chaos.sh

lint: install-dev  ## ruff + mypy + the import-layer contracts (pyproject [tool.importlinter])
	@$(VENV)/bin/ruff check .
	@$(VENV)/bin/mypy
	@$(VENV)/bin/lint-imports

bench: install-dev  ## benchmark: ceiling, Faust no-op peer, the worker shared/dedicated, CPU per event -> bench/results/latest.json, README/docs tables; the collector -> collector.json (BENCH_ARGS=--scale-out: 1, 2, 4 workers -> scale-out.json)
	@$(VENV)/bin/pip install -q -e '.[bench]'
	@scripts/stack.sh up
	@PYTHONPATH=$(CURDIR) $(PY) scripts/bench.py $(BENCH_ARGS)
	@$(PY) scripts/bench_report.py
	@if [[ "$(BENCH_ARGS)" != *--scale-out* ]]; then $(PY) scripts/bench_collector.py; fi

soak: install-dev  ## bounded soak: a long generated history under retention; memory figures
	@scripts/stack.sh up
	@$(PY) scripts/soak.py $(SOAK_ARGS)

readme: install  ## regenerate the README's configuration table from streams/core/settings.py
	@$(PY) scripts/readme_settings.py

clean: down  ## stop services and delete .stack/ (cached Kafka jars are kept)
	rm -rf .stack
