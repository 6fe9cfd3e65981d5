# Two commands on a fresh machine: `make run` and `make test`. Both install what they need.
SHELL := /bin/bash
BIN := .venv/bin
STAMP := .venv/.installed

.PHONY: run demo test test-fast lint fmt bench venv redis system node clean

run: venv redis            ## the whole stack on this machine (live Binance)
	$(BIN)/tickstream up

demo: venv redis           ## the whole stack against the local simulator (offline)
	$(BIN)/tickstream up --simulate

test: venv system lint     ## lint, type-check and the full test suite
	npm --prefix clients/js test
	examples/check-pack.sh
	$(BIN)/pytest

test-fast: venv            ## the sans-I/O unit tests only (seconds, no servers)
	$(BIN)/pytest -q tests/test_layout.py tests/shared/test_events.py tests/shared/test_codec.py \
	  tests/shared/test_settings.py tests/shared/test_basics.py tests/gateway/test_protocol_unit.py \
	  tests/gateway/test_writer.py tests/ingestor -k "not test_io_"

lint: venv node
	$(BIN)/ruff check .
	$(BIN)/mypy
	npm --prefix clients/js run --silent typecheck

fmt: venv
	$(BIN)/ruff check --fix .

bench: venv redis          ## every benchmark (see bench/README.md for one at a time)
	$(BIN)/python -m bench.publish
	$(BIN)/python -m bench.ingest
	$(BIN)/python -m bench.fanout

venv: $(STAMP)

$(STAMP): pyproject.toml requirements.lock scripts/ensure-venv.sh
	@scripts/ensure-venv.sh
	@touch $@

redis:
	@scripts/ensure-redis.sh

node:                      ## node/npm, and clients/js's packages from its lock file (npm ci)
	@scripts/ensure-node.sh

system:                    ## redis-server, plus haproxy and chromium for their tests
	@scripts/ensure-system.sh

clean:
	rm -rf .venv .state .mypy_cache .ruff_cache .pytest_cache .hypothesis
