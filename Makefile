# Two commands on a fresh machine: `make run` and `make test`. Both install what they need.
SHELL := /bin/bash
BIN := .venv/bin
STAMP := .venv/.installed

.PHONY: run demo test test-fast lint fmt bench venv redis clean

run: venv redis            ## the whole stack on this machine (live Binance)
	$(BIN)/tickstream up

demo: venv redis           ## the whole stack against the local simulator (offline)
	$(BIN)/tickstream up --simulate

test: venv redis lint      ## lint, type-check and the full test suite
	$(BIN)/pytest

test-fast: venv            ## unit tests only
	$(BIN)/pytest -m "not integration"

lint: venv
	$(BIN)/ruff check .
	$(BIN)/mypy

fmt: venv
	$(BIN)/ruff check --fix .

bench: venv redis          ## every benchmark (see bench/README.md for one at a time)
	$(BIN)/python -m bench.publish

venv: $(STAMP)

$(STAMP): pyproject.toml requirements.lock scripts/ensure-venv.sh
	@scripts/ensure-venv.sh
	@touch $@

redis:
	@scripts/ensure-redis.sh

clean:
	rm -rf .venv .state .mypy_cache .ruff_cache .pytest_cache .hypothesis
