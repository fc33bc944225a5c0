# wmproxy: two commands for a newcomer.
#   make demo   set up a virtualenv, start the service and a worker on a throwaway PKI
#               and SQLite database, and run a real job with the CLI
#   make test   set up (system packages and PostgreSQL when run as root), lint, and run all tests
#   make lint   ruff and mypy only (configured in pyproject.toml)
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin

.PHONY: demo test lint venv system clean

venv: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[test]'
	touch $@

system:
	bash scripts/setup-system.sh

demo: venv
	bash scripts/demo.sh $(DEMO_ARGS)

lint: venv
	$(BIN)/ruff check .
	$(BIN)/mypy

test: venv system lint
	$(BIN)/pytest $(PYTEST_ARGS)

clean:
	rm -rf $(VENV) demo-state .pytest_cache .mypy_cache .ruff_cache
