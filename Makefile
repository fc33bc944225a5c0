# wmproxy: two commands for a newcomer.
#   make demo   set up a virtualenv, start the service and a worker on a throwaway PKI
#               and SQLite database, and run a real job with the CLI
#   make test   set up (system packages and PostgreSQL when run as root) and run all tests
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin

.PHONY: demo test venv system clean

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

test: venv system
	$(BIN)/pytest $(PYTEST_ARGS)

clean:
	rm -rf $(VENV) demo-state .pytest_cache
