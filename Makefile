# All set-up happens here: a fresh machine needs only Python >= 3.11 and pip.
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: test demo bench lint typecheck clean

$(STAMP): pyproject.toml
	$(PY) -m venv $(VENV)
	$(BIN)/python -m pip install -q --disable-pip-version-check --upgrade pip
	$(BIN)/python -m pip install -q --disable-pip-version-check -e '.[dev]'
	touch $(STAMP)

lint: $(STAMP)
	$(BIN)/ruff check src tests bench
	$(BIN)/ruff format --check src tests bench

typecheck: $(STAMP)
	$(BIN)/mypy

test: lint typecheck
	$(BIN)/pytest

demo: $(STAMP)
	$(BIN)/conveyor demo

bench: $(STAMP)
	$(BIN)/python bench/overhead.py
	$(BIN)/python bench/limits.py
	$(BIN)/python bench/http.py
	$(BIN)/python bench/jobs.py --arq --aiosqlite

clean:
	rm -rf $(VENV) .mypy_cache .pytest_cache .ruff_cache
