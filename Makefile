# Two commands: `make run` and `make test`. Both create .venv and install on a fresh machine.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: run test lint typecheck demo bench clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[test]'
	touch $(STAMP)

run: $(STAMP)
	$(BIN)/anss-gateway serve --with-simulators

test: $(STAMP)
	$(BIN)/ruff check gateway connectors simulators tests bench
	$(BIN)/mypy
	$(BIN)/pytest

demo: $(STAMP)
	$(BIN)/anss-gateway demo

bench: $(STAMP)
	$(BIN)/python -m bench.verifications

clean:
	rm -rf $(VENV) var
