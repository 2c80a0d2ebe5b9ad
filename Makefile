# Thin entry points; the work is in scripts/.  `make help` lists them.
SHELL := /bin/bash
VENV  ?= .venv
PY    := $(VENV)/bin/python
export PATH := $(CURDIR)/$(VENV)/bin:$(PATH)

.PHONY: help install up down status worker demo test test-unit lint bench chaos clean readme

help:  ## list the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-10s %s\n", $$1, $$2}'

install: $(VENV)/.installed  ## create .venv and install shopstream with its dev tools

$(VENV)/.installed: pyproject.toml
	@scripts/install.sh $(VENV)
	@touch $@

up:  ## start Kafka (KRaft) and Redis on 127.0.0.1 (installs them on first use)
	@scripts/stack.sh up

down:  ## stop the Kafka and Redis that `make up` started
	@scripts/stack.sh down

status:  ## show whether Kafka and Redis are running
	@scripts/stack.sh status

worker: install up  ## run the worker in the foreground
	@$(VENV)/bin/shopstream worker

demo: install  ## install, start everything, replay a generated clickstream, show the outputs
	@scripts/demo.sh

test: install  ## unit + integration tests against the real Kafka and Redis
	@scripts/test.sh

test-unit: install  ## unit tests only (no services)
	@$(PY) -m pytest -m "not integration" -q

chaos: install  ## fault injection: kill -9, poison pills, Redis/Kafka outages, duplicates, slow consumer
	@scripts/chaos.sh

lint: install  ## ruff + mypy + the import-layer contracts (pyproject [tool.importlinter])
	@$(VENV)/bin/ruff check .
	@$(VENV)/bin/mypy
	@$(VENV)/bin/lint-imports

bench: install  ## benchmark: raw aiokafka ceiling vs the full worker -> bench/results/latest.json
	@$(VENV)/bin/pip install -q -e '.[bench]'
	@scripts/stack.sh up
	@$(PY) scripts/bench.py $(BENCH_ARGS)

readme: install  ## regenerate the README's configuration table from streams/core/settings.py
	@$(PY) scripts/readme_settings.py

clean: down  ## stop services and delete .stack/ (cached Kafka jars are kept)
	rm -rf .stack
