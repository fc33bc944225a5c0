# wmproxy: two commands for a newcomer.
#   make demo   set up a virtualenv, start the service and a worker on a throwaway PKI
#               and SQLite database, and run a real job with the CLI
#   make test   set up (system packages and PostgreSQL when run as root), lint, and run all tests
#               on Python 3.11, and at the same time the 3.13 subset and the Slurm tests
#               (.ci/test-pythons.sh; PYTEST_WORKERS=0 runs the 3.11 session in one process)
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

# The whole suite on Python 3.11 (in pytest-xdist processes) and, concurrently, the 3.13 run
# (.venv313) and the Slurm tests (what runs where:
# .ci/test-pythons.sh). PYTHON313=/path/to/python3.13 if it is not under ~/.pyenv or on PATH.
test: venv system lint
	PYTEST_ARGS="$(PYTEST_ARGS)" MAKE="$(MAKE)" bash .ci/test-pythons.sh

clean:
	rm -rf $(VENV) .venv313 test-3.13.log test-3.11-side.log demo-state .pytest_cache .mypy_cache .ruff_cache
