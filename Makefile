# sfconnect — every target works from a fresh clone (make install runs first where needed).
SHELL := /bin/bash
UV ?= $(shell command -v uv 2>/dev/null || echo .venv-tools/bin/uv)
PY := .venv/bin/python
PYTEST := $(PY) -m pytest
export UV_LINK_MODE ?= copy

.PHONY: help install test test-unit test-integration test-contract test-e2e test-fault lint fmt contracts demo run up bench clean

help: ## list the targets
	@grep -E '^[a-z0-9-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  %-18s %s\n", $$1, $$2}'

$(UV):
	python3 -m venv .venv-tools && .venv-tools/bin/pip install --quiet 'uv==0.13.9'

.venv/.installed: pyproject.toml uv.lock | $(UV)
	$(UV) sync --frozen --all-groups
	@touch $@

install: .venv/.installed ## create .venv with the locked dependencies (idempotent)

test: install ## every test tier that can run on this machine (real RabbitMQ + MongoDB-wire server)
	$(PYTEST) -ra tests

test-unit: install ## unit tests only (no infrastructure)
	$(PYTEST) -ra tests/unit

test-integration: install ## adapters against the real broker and database
	$(PYTEST) -ra tests/integration

test-contract: install ## AsyncAPI staleness and Pact message contracts
	$(PYTEST) -ra tests/contract

test-e2e: install ## services as separate processes
	$(PYTEST) -ra tests/e2e

test-fault: install ## fault injection (broker restarts, kills, outages)
	$(PYTEST) -ra tests/fault

lint: install ## ruff and mypy
	$(PY) -m ruff check .
	$(PY) -m ruff format --check .
	$(PY) -m mypy

fmt: install ## format and fix what ruff can
	$(PY) -m ruff format .
	$(PY) -m ruff check --fix .

contracts: install ## regenerate contracts/asyncapi.yaml (from shared/contracts) and contracts/pacts/ (tests/contract)
	$(PY) -m shared.contracts.asyncapi > contracts/asyncapi.yaml
	$(PY) -m tests.contract.pact_files contracts/pacts

demo: install ## the whole flow on the embedded default (local RabbitMQ, SecantusDB, simulator, Builder, Manager)
	$(PY) -m devtools.demo

run: install ## leave the embedded default stack running; prints its URLs and a ready API key
	$(PY) -m devtools.run

up: install ## the compose stack (needs a Docker engine); writes .env with fresh keys on first use
	$(PY) deploy/compose/generate_env.py --output .env
	docker compose up --build --wait

bench: install ## benchmarks (minutes); writes bench/results/latest.json and a summary
	$(PY) -m bench

clean: ## remove the virtual environments and caches
	rm -rf .venv .venv-tools .pytest_cache .mypy_cache .ruff_cache .run
