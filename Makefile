# The two commands of the README: `make demo` and `make test`. Each creates .venv when missing and
# installs the project with its dev extras (a stamp file makes the second run instant). As root,
# the setup also apt-installs the Debian programs the serve tests use (scripts/install-system-deps.sh).
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-stamp
PYTEST_ARGS ?=

.PHONY: setup demo test bench clean

$(STAMP): pyproject.toml scripts/install-system-deps.sh
	@sh scripts/install-system-deps.sh
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	@$(BIN)/python -m pip install -q --upgrade pip
	@$(BIN)/python -m pip install -q -e '.[dev]'
	@touch $(STAMP)

setup: $(STAMP)

demo: $(STAMP)
	$(BIN)/mammokit demo --out demo_out

test: $(STAMP)
	$(BIN)/python -m pytest -q $(PYTEST_ARGS)

bench: $(STAMP)
	$(BIN)/python -m benchmarks.bench

clean:
	rm -rf demo_out .pytest_cache
