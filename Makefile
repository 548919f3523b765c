# sentiment-operator: every target works on a fresh machine (it installs what it needs first).
SHELL := /bin/bash
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
TORCH_CPU_INDEX := https://download.pytorch.org/whl/cpu
PYTEST_ARGS ?=

.DEFAULT_GOAL := help

.PHONY: help
help: ## List the targets
	@grep -hE '^[a-zA-Z_-]+:.*?## ' $(MAKEFILE_LIST) | awk 'BEGIN{FS=":.*?## "}{printf "  \033[36m%-14s\033[0m %s\n", $$1, $$2}'

# Installs come from the committed locks (requirements/, see tools/lockfile.py), never from a fresh resolution:
# --require-hashes --no-deps, so pip installs exactly the pinned files. torch is 2.13.0+cpu: pip finds it on this
# machine's local wheel directory where there is one, otherwise on PyTorch's CPU index (PyPI has no +cpu builds).
PIP_LOCKED := $(PY) -m pip install -q --require-hashes --no-deps
# Real parts the tests and the demo start on loopback ports (Debian packages; the binary is named as the package).
APT_PACKAGES := redis-server prometheus
$(STAMP): pyproject.toml requirements/dev.txt requirements/data.txt
	@missing="$$(for p in $(APT_PACKAGES); do command -v $$p >/dev/null || echo $$p; done)"; \
	if [ -n "$$missing" ]; then echo "Installing" $$missing "(apt)"; \
	  $$( [ "$$(id -u)" = 0 ] || echo sudo ) apt-get update -qq && \
	  $$( [ "$$(id -u)" = 0 ] || echo sudo ) apt-get install -y -qq --no-install-recommends $$missing >/dev/null; fi
	@[ -x $(PY) ] || python3 -m venv $(VENV)
	$(PIP_LOCKED) -r requirements/dev.txt -r requirements/data.txt || \
	  $(PIP_LOCKED) -r requirements/dev.txt -r requirements/data.txt --extra-index-url $(TORCH_CPU_INDEX)
	$(PY) -m pip install -q --no-deps --no-build-isolation -e .
	$(PY) tools/lockfile.py check
	@touch $(STAMP)

# The Gateway API schema validators the tests run (tests/gateway_api_schema.py): npm packages installed from
# the committed lock into a git-ignored node_modules, never fetched at test time. Node.js and npm come from
# apt (Debian's nodejs and npm) when missing.
NODE_PROJECT := tests/gateway_api
NODE_STAMP := $(NODE_PROJECT)/node_modules/.installed
$(NODE_STAMP): $(NODE_PROJECT)/package.json $(NODE_PROJECT)/package-lock.json
	@command -v npm >/dev/null || { echo "Installing nodejs npm (apt)"; \
	  $$( [ "$$(id -u)" = 0 ] || echo sudo ) apt-get update -qq && \
	  $$( [ "$$(id -u)" = 0 ] || echo sudo ) apt-get install -y -qq --no-install-recommends nodejs npm >/dev/null; }
	npm ci --prefix $(NODE_PROJECT) --no-audit --no-fund --ignore-scripts --loglevel=error
	@touch $(NODE_STAMP)

.PHONY: install
install: $(STAMP) $(NODE_STAMP) ## Create .venv from the lock (torch CPU, both packages, the dev tools); npm ci the Gateway API schemas; apt-install redis-server, prometheus (and Node.js) if missing

# The security scanner lives in an environment of its own: its pins clash with ours (requirements/checkov.txt).
CHECKOV_VENV := .venv-checkov
CHECKOV_STAMP := $(CHECKOV_VENV)/.installed
$(CHECKOV_STAMP): requirements/checkov.txt
	@[ -x $(CHECKOV_VENV)/bin/python ] || python3 -m venv $(CHECKOV_VENV)
	$(CHECKOV_VENV)/bin/python -m pip install -q --require-hashes --no-deps -r requirements/checkov.txt
	@touch $(CHECKOV_STAMP)

.PHONY: checkov
checkov: $(STAMP) $(CHECKOV_STAMP) ## Security scan (checkov, offline) of every rendered example and both deploy overlays
	$(PY) tools/checkov_scan.py --checkov $(CHECKOV_VENV)/bin/checkov

.PHONY: lock
lock: $(STAMP) ## Regenerate requirements/*.txt from pyproject.toml (keeps pins; LOCK_ARGS=--upgrade moves them)
	$(PY) tools/lockfile.py compile $(LOCK_ARGS)

.PHONY: lint
lint: $(STAMP) ## The locks match pyproject.toml and .venv; ruff (lint + format check), mypy --strict, import-linter
	$(PY) tools/lockfile.py check
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/mypy
	$(VENV)/bin/mypy tools
	$(VENV)/bin/lint-imports

.PHONY: format
format: $(STAMP) ## Apply ruff fixes and formatting
	$(VENV)/bin/ruff check --fix .
	$(VENV)/bin/ruff format .

.PHONY: test
test: $(STAMP) $(NODE_STAMP) ## Run the whole test suite (real redis-server, kmock API server, k6)
	$(PY) -m pytest $(PYTEST_ARGS)

.PHONY: demo
demo: $(STAMP) ## The main job end to end, offline: the real operator on an embedded cluster, kubectl, predictions
	bash examples/demo.sh

DEVMODEL := .cache/demo/model
.PHONY: cluster
cluster: $(STAMP) ## Keep the embedded cluster up for your own kubectl (Ctrl-C stops it); prints the KUBECONFIG
	@[ -f $(DEVMODEL)/config.json ] || $(VENV)/bin/sentiment-devmodel --out $(DEVMODEL) --train
	HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 $(PY) -m sentiment_devcluster up --state-dir .cache/devcluster \
	  --model-dir $(DEVMODEL) --prometheus

.PHONY: bench
bench: $(STAMP) ## Our server vs the pipeline server it replaces (k6, real redis-server; ~25-45 min; bench/README.md)
	@mkdir -p bench/results
	$(PY) -m bench.run --out bench/results/bench.json $(BENCH_ARGS)

.PHONY: golden
golden: $(STAMP) ## Regenerate the golden manifests in tests/operator/golden/ from examples/
	UPDATE_GOLDEN=1 $(PY) -m pytest -q tests/operator/test_golden.py

.PHONY: crd
crd: $(STAMP) ## Regenerate crds/sentimentmodel.yaml from the pydantic spec
	$(PY) -m sentiment_operator.crd > crds/sentimentmodel.yaml

.PHONY: docs
docs: $(STAMP) ## Regenerate README.md's reference tables (env vars, spec fields, metrics) from the code
	$(PY) tests/readme_sync.py

.PHONY: clean
clean: ## Remove the venv and caches
	rm -rf $(VENV) $(CHECKOV_VENV) $(NODE_PROJECT)/node_modules .cache .pytest_cache .mypy_cache .ruff_cache
