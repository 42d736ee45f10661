# histfill: everything a fresh machine needs goes through these targets.
# `make run` (the main job on the built-in simulator) and `make test` do all the set-up themselves.

PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

.PHONY: install run test test-unit lint typecheck compose-check ops-tools stack-up stack-down stack-status bench clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[dev,bench]'
	touch $(STAMP)

install: $(STAMP)

stack-up: $(STAMP)
	$(BIN)/histfill stack up

stack-down:
	@if [ -x $(BIN)/histfill ]; then $(BIN)/histfill stack down; else echo "no venv: nothing was started"; fi

stack-status: $(STAMP)
	$(BIN)/histfill stack status

run: stack-up
	$(BIN)/histfill run

test: stack-up compose-check ops-tools
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy
	$(BIN)/pytest

test-unit: $(STAMP)
	$(BIN)/pytest tests/unit

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

typecheck: $(STAMP)
	$(BIN)/mypy

# promtool checks and unit-tests ops/prometheus's rules (tests/unit/ops); Debian's package
ops-tools: $(STAMP)
	$(BIN)/histfill stack tools

compose-check:
	bash stack/compose-check.sh

bench: stack-up
	$(BIN)/python bench/e2e.py

clean: stack-down
	rm -rf .stack $(VENV)
