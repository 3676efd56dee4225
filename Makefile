PY ?= python
.DEFAULT_GOAL := help

help:  ## list targets
	@grep -E '^[a-z-]+:.*##' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  %-10s %s\n", $$1, $$2}'

install:  ## install torch (CPU wheel here) and the project with dev tools
	$(PY) -m pip install torch==2.13.0
	$(PY) -m pip install -e ".[dev]"

test:  ## fast test suite (< 3 min)
	$(PY) -m pytest -m "not slow" -q

test-all:  ## every test, the slow end-to-end ones too
	$(PY) -m pytest -q

train:  ## main job on the embedded toy corpus (override with ARGS="key=value ...")
	$(PY) run.py $(ARGS)

lint:  ## ruff lint + format check
	$(PY) -m ruff check .
	$(PY) -m ruff format --check .

format:  ## ruff format + autofix
	$(PY) -m ruff format .
	$(PY) -m ruff check --fix .

clean:  ## remove run outputs and caches
	rm -rf outputs multirun lightning_logs wandb .pytest_cache .ruff_cache
	find . -name __pycache__ -type d -prune -exec rm -rf {} +

.PHONY: help install test test-all train lint format clean
